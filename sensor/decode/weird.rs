//! Named anomalies found while decoding ("weirds", as Zeek calls them).
//! Every dropped or partially analysed packet is counted under one of these
//! names, so hostile or broken traffic is visible in the summary and in
//! metrics instead of vanishing. The protocol analyzers' limits
//! (`conn/service/limits.rs`) are counted here too, under Zeek's names.

macro_rules! weirds {
    ($($variant:ident => $name:literal,)*) => {
        /// A decoding anomaly; the name is Zeek's weird name where Zeek has one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Weird { $($variant,)* }

        impl Weird {
            pub const ALL: &'static [Weird] = &[$(Weird::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(Weird::$variant => $name,)* }
            }
        }
    };
}

weirds! {
    TruncatedEthernetFrame => "truncated_ethernet_frame",
    TruncatedLinkHeaderCfp => "truncated_link_header_cfp",
    UndefinedEtherType => "undefined_ether_type",
    TruncatedVlanHeader => "truncated_VLAN_header",
    UndefinedVlanProtocol => "undefined_vlan_protocol",
    TruncatedMplsHeader => "truncated_link_header",
    TruncatedPbbHeader => "truncated_PBB_header",
    TruncatedVntagHeader => "truncated_vntag_header",
    TruncatedPppHeader => "truncated_ppp_header",
    TruncatedPppoeHeader => "truncated_pppoe_header",
    TruncatedNullHeader => "null_analyzer_failed",
    TruncatedLlcHeader => "truncated_llc_header",
    TruncatedSnapHeader => "truncated_snap_header",
    TruncatedFddiHeader => "FDDI_analyzer_failed",
    Truncated80211Header => "truncated_802_11_header",
    Truncated80211Amsdu => "truncated_802_11_amsdu_packet",
    TruncatedRadiotapHeader => "truncated_radiotap_header",
    TruncatedSllHeader => "truncated_Linux_SLL_header",
    TruncatedNflogHeader => "truncated_nflog_header",
    UnknownLinkType => "unknown_link_type",
    UnknownL3Protocol => "unknown_protocol",
    TruncatedIp => "truncated_IP",
    UnknownIpVersion => "unknown_ip_version",
    IpHdrLenZero => "ip_hdr_len_zero",
    TruncatedIpLen => "truncated_IP_len",
    InvalidIpHeaderSize => "invalid_IP_header_size",
    InternallyTruncatedHeader => "internally_truncated_header",
    Ipv4MinHeaderSize => "IPv4_min_header_size",
    Ipv6MinHeaderSize => "IPv6_min_header_size",
    BadIpChecksum => "bad_IP_checksum",
    IncompletelyCapturedFragment => "incompletely_captured_fragment",
    FragmentInconsistency => "fragment_inconsistency",
    FragmentTableFull => "fragment_table_full",
    FragmentMemoryFull => "fragment_memory_full",
    FragmentDatagramOverBudget => "fragment_datagram_over_budget",
    Ipv6NoNext => "ipv6_no_next",
    EspPacket => "esp_packet",
    TruncatedTransportHeader => "truncated_header",
    BadTcpHeaderLen => "bad_TCP_header_len",
    BadTcpChecksum => "bad_TCP_checksum",
    BadUdpChecksum => "bad_UDP_checksum",
    BadIcmpChecksum => "bad_ICMP_checksum",
    TruncatedGre => "truncated_GRE",
    UnknownGreVersion => "unknown_gre_version",
    UnknownGreFlags => "unknown_gre_flags",
    GreRouting => "gre_routing",
    EgreProtocolType => "egre_protocol_type",
    NonIpPacketInEncap => "non_ip_packet_in_encap",
    InvalidInnerIpVersion => "invalid_inner_IP_version",
    TruncatedInnerIp => "truncated_inner_IP",
    InnerIpPayloadLengthMismatch => "inner_IP_payload_length_mismatch",
    ExceededTunnelMaxDepth => "exceeded_tunnel_max_depth",
    TunnelViolation => "tunnel_protocol_violation",
    TunnelEmptyPacket => "tunnel_empty_packet",
    TunnelMaxChangesExceeded => "tunnel_max_changes_per_connection_exceeded",
    ConnectionTableFull => "connection_table_full",
    PacketTimeOutOfRange => "packet_time_out_of_range",
    AboveHoleDataWithoutAnyAcks => "above_hole_data_without_any_acks",
    ExcessiveDataWithoutFurtherAcks => "excessive_data_without_further_acks",
    TcpReassemblyFlowBudget => "tcp_reassembly_flow_over_budget",
    TcpReassemblyMemory => "tcp_reassembly_memory_full",
    TcpReassemblyTooManyBlocks => "tcp_reassembly_too_many_segments",
    // Analyzer limits (`Connection::LimitReachedWeird`): each also puts
    // an `X` in the connection's history.
    FtpMaxCommandLengthExceeded => "FTP_max_command_length_exceeded",
    DnsConnCountTooLarge => "DNS_Conn_count_too_large",
    DnsMaxCompressionChainDepthExceeded => "DNS_max_compression_chain_depth_exceeded",
    DnsUnknownOpcode => "DNS_unknown_opcode",
    SshMaxPacketLengthExceeded => "SSH_max_packet_length_exceeded",
    SshMaxStringLengthExceeded => "SSH_max_string_length_exceeded",
    SshMaxKexinitKexAlgorithmsExceeded => "SSH_max_kexinit_kex_algorithms_exceeded",
    SshMaxKexinitHostkeyAlgorithmsExceeded => "SSH_max_kexinit_hostkey_algorithms_exceeded",
    SshMaxKexinitEncryptionAlgorithmsExceeded => "SSH_max_kexinit_encryption_algorithms_exceeded",
    SshMaxKexinitMacAlgorithmsExceeded => "SSH_max_kexinit_mac_algorithms_exceeded",
    SshMaxKexinitCompressionAlgorithmsExceeded => "SSH_max_kexinit_compression_algorithms_exceeded",
    SshMaxKexinitLanguagesExceeded => "SSH_max_kexinit_languages_exceeded",
    HttpExcessivePipelining => "HTTP_excessive_pipelining",
    SmtpExcessiveInvalidMailTransactions => "smtp_excessive_invalid_mail_transactions",
    ExceededMimeMaxDepth => "exceeded_mime_max_depth",
    ExceededMimeMaxHeaderBytes => "exceeded_mime_max_header_bytes",
}

/// Counts of each [`Weird`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeirdCounts([u64; Weird::ALL.len()]);

impl Default for WeirdCounts {
    fn default() -> Self {
        WeirdCounts([0; Weird::ALL.len()])
    }
}

impl WeirdCounts {
    pub fn add(&mut self, w: Weird) {
        self.0[w as usize] += 1;
    }
    pub fn get(&self, w: Weird) -> u64 {
        self.0[w as usize]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero counts, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Weird, u64)> + '_ {
        Weird::ALL
            .iter()
            .map(|w| (*w, self.0[*w as usize]))
            .filter(|(_, n)| *n > 0)
    }
    pub fn merge(&mut self, other: &WeirdCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += *b;
        }
    }
}
