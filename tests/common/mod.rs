pub mod netns;
pub mod oracle;
pub mod python;
