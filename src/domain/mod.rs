//! The rules of keyward, free of HTTP and SQL: key formats, names, roles, time.

pub mod crypto;
pub mod keys;
pub mod names;
pub mod states;
pub mod time;
pub mod vault;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random identifier: 32 lowercase hex characters (128 bits), RAGFlow's id shape.
pub fn new_id(fill_random: impl FnOnce(&mut [u8])) -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    hex(&bytes)
}
