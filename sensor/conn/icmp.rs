//! ICMP messages as Zeek pairs them into connections: a request and its
//! reply (echo, timestamp, address mask, router solicitation, ...) are one
//! connection whose ports are the two types; any other message is a
//! one-way connection whose ports are its type and code.

/// The responder "port" of an ICMP message of type `ty` and whether the
/// message is one-way (has no counterpart).
pub fn counterpart(is_v6: bool, ty: u8, code: u8) -> (u16, bool) {
    if is_v6 {
        v6(ty, code)
    } else {
        v4(ty, code)
    }
}

fn v4(t: u8, code: u8) -> (u16, bool) {
    match t {
        8 => (0, false),
        0 => (8, false),
        13 => (14, false),
        14 => (13, false),
        15 => (16, false),
        16 => (15, false),
        10 => (9, false),
        9 => (10, false),
        17 => (18, false),
        18 => (17, false),
        _ => (u16::from(code), true),
    }
}

fn v6(t: u8, code: u8) -> (u16, bool) {
    match t {
        128 => (129, false),
        129 => (128, false),
        133 => (134, false),
        134 => (133, false),
        135 => (136, false),
        136 => (135, false),
        130 => (131, false),
        131 => (130, false),
        139 => (140, false),
        140 => (139, false),
        144 => (145, false),
        145 => (144, false),
        _ => (u16::from(code), true),
    }
}
