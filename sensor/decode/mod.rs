//! Decoding captured bytes into the layers Zeek analyses: link layers down
//! to IP (`link`), the IP header and its checks (`ip`), fragment reassembly
//! (`frag`), tunnel headers (`tunnel`), checksums (`checksum`), and the
//! part of it the capture thread does ahead of the engine (`prepare`,
//! kept with each packet of a [`PacketBatch`] handed between threads).
//! Everything here works on borrowed slices of the capture buffer; only
//! fragment reassembly copies, because a datagram spread over several
//! packets has to be made contiguous.

mod batch;
pub mod checksum;
pub mod frag;
pub mod ip;
pub mod link;
pub mod prepare;
pub mod tunnel;
pub mod weird;

pub use batch::PacketBatch;
pub use link::{decode_link, decode_link_into, L2Info, L3Frame, LinkStop};
pub use weird::{Weird, WeirdCounts};
