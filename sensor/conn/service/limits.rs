//! Zeek's analyzer limits that osprey's parsers share.
//!
//! When a Zeek analyzer hits one of these it calls
//! `Connection::LimitReachedWeird`: a weird named for the limit, and an `X`
//! in conn.log's `history` (once per connection). The `X` is what a model
//! trained on Zeek logs sees, so osprey reports the same limits at the same
//! moment: a parser pushes [`super::Note::LimitReached`], the tree turns it
//! into [`super::ServiceEvent::LimitReached`], and the connection engine
//! adds the letter and counts the weird.
//!
//! Every limit here is settable with Zeek's own option name through
//! `--set NAME=VALUE` (see [`AnalyzerLimits::SETTINGS`]); the defaults are
//! Zeek's. A limit of 0 disables it where Zeek's does too (all but
//! `dns_max_compression_chain_depth`, which Zeek compares as `depth > max`).
//!
//! Limits osprey does not reach, because its parsers do not go that far:
//! `SSL::max_ssl_history_length` (osprey does not build `ssl_history`),
//! and the NVT/ContentLine buffer limits of 16 MiB (osprey keeps lines far
//! shorter and never raises them).

use super::mime::MimeLimits;

/// The analyzer limits of one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalyzerLimits {
    /// `FTP::max_command_length`: a longer command word is ignored, with a
    /// weird once the analyzer confirmed.
    pub ftp_max_command_length: u64,
    /// `dns_max_queries`: a message with more questions is a violation.
    pub dns_max_queries: u64,
    /// `dns_max_compression_chain_depth`: deeper compression pointer
    /// chains end the name where they are.
    pub dns_max_compression_chain_depth: u64,
    /// `SSH::max_packet_length`: longer packets are cut to this length
    /// (the rest of the real packet is then read as the next one).
    pub ssh_max_packet_length: u64,
    /// `SSH::max_string_length`: longer strings are cut likewise.
    pub ssh_max_string_length: u64,
    /// `SSH::max_kexinit_*_algorithms` and `SSH::max_kexinit_languages`,
    /// in [`KexList`] order.
    pub ssh_max_kexinit: [u64; 6],
    /// `HTTP::max_pending_requests`: requests waiting for a reply beyond
    /// this are flushed by the HTTP scripts.
    pub http_max_pending_requests: u64,
    /// `SMTP::max_invalid_mail_transactions`: beyond this the SMTP scripts
    /// disable the analyzer.
    pub smtp_max_invalid_mail_transactions: u64,
    /// `MIME::max_depth` and `MIME::max_header_bytes`, for the MIME
    /// entities of HTTP bodies and SMTP mails (see [`super::mime`]).
    pub mime: MimeLimits,
}

/// The name lists of an SSH KEXINIT that have a limit, in the order of
/// [`AnalyzerLimits::ssh_max_kexinit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KexList {
    Kex,
    HostKey,
    Encryption,
    Mac,
    Compression,
    Languages,
}

impl Default for AnalyzerLimits {
    fn default() -> Self {
        AnalyzerLimits {
            ftp_max_command_length: 100,
            dns_max_queries: 25,
            dns_max_compression_chain_depth: 20,
            ssh_max_packet_length: 8 * 1024 * 1024,
            ssh_max_string_length: 2 * 1024 * 1024,
            ssh_max_kexinit: [100; 6],
            http_max_pending_requests: 100,
            smtp_max_invalid_mail_transactions: 25,
            mime: MimeLimits {
                max_depth: 100,
                max_header_bytes: 65536,
            },
        }
    }
}

impl AnalyzerLimits {
    /// Zeek's option names accepted by [`AnalyzerLimits::set`].
    pub const SETTINGS: &'static [&'static str] = &[
        "FTP::max_command_length",
        "dns_max_queries",
        "dns_max_compression_chain_depth",
        "SSH::max_packet_length",
        "SSH::max_string_length",
        "SSH::max_kexinit_kex_algorithms",
        "SSH::max_kexinit_hostkey_algorithms",
        "SSH::max_kexinit_encryption_algorithms",
        "SSH::max_kexinit_mac_algorithms",
        "SSH::max_kexinit_compression_algorithms",
        "SSH::max_kexinit_languages",
        "HTTP::max_pending_requests",
        "SMTP::max_invalid_mail_transactions",
        "MIME::max_depth",
        "MIME::max_header_bytes",
    ];

    /// Sets the limit Zeek calls `name` to `value`; false if `name` is not
    /// one of [`AnalyzerLimits::SETTINGS`].
    pub fn set(&mut self, name: &str, value: u64) -> bool {
        let slot = match name {
            "FTP::max_command_length" => &mut self.ftp_max_command_length,
            "dns_max_queries" => &mut self.dns_max_queries,
            "dns_max_compression_chain_depth" => &mut self.dns_max_compression_chain_depth,
            "SSH::max_packet_length" => &mut self.ssh_max_packet_length,
            "SSH::max_string_length" => &mut self.ssh_max_string_length,
            "SSH::max_kexinit_kex_algorithms" => &mut self.ssh_max_kexinit[KexList::Kex as usize],
            "SSH::max_kexinit_hostkey_algorithms" => {
                &mut self.ssh_max_kexinit[KexList::HostKey as usize]
            }
            "SSH::max_kexinit_encryption_algorithms" => {
                &mut self.ssh_max_kexinit[KexList::Encryption as usize]
            }
            "SSH::max_kexinit_mac_algorithms" => &mut self.ssh_max_kexinit[KexList::Mac as usize],
            "SSH::max_kexinit_compression_algorithms" => {
                &mut self.ssh_max_kexinit[KexList::Compression as usize]
            }
            "SSH::max_kexinit_languages" => &mut self.ssh_max_kexinit[KexList::Languages as usize],
            "HTTP::max_pending_requests" => &mut self.http_max_pending_requests,
            "SMTP::max_invalid_mail_transactions" => &mut self.smtp_max_invalid_mail_transactions,
            "MIME::max_depth" => &mut self.mime.max_depth,
            "MIME::max_header_bytes" => &mut self.mime.max_header_bytes,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// `limit` as a `u32` cap where 0 means none (SSH lengths).
    pub(crate) fn cap_u32(limit: u64) -> u32 {
        match limit {
            0 => u32::MAX,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_sets_something() {
        for name in AnalyzerLimits::SETTINGS {
            let mut l = AnalyzerLimits::default();
            assert!(l.set(name, 7), "{name}");
            assert_ne!(l, AnalyzerLimits::default(), "{name}");
        }
        assert!(!AnalyzerLimits::default().set("FTP::nope", 1));
    }

    #[test]
    fn zero_means_no_cap() {
        assert_eq!(AnalyzerLimits::cap_u32(0), u32::MAX);
        assert_eq!(AnalyzerLimits::cap_u32(1000), 1000);
        assert_eq!(AnalyzerLimits::cap_u32(u64::MAX), u32::MAX);
    }
}
