//! Free loopback ports for one test.

use std::net::TcpListener;

/// A port the kernel just handed out on 127.0.0.1. It is released before use, so another
/// process could take it in between; ports come from the ephemeral range, where that is rare.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
