//! systemd's readiness notification (`sd_notify`), the little of it `hookd serve` needs: under a unit with
//! `Type=notify`, systemd sets `NOTIFY_SOCKET` to a Unix datagram socket (a path, or `@name` in the
//! abstract namespace) and waits for `READY=1` before it counts the service started; `STOPPING=1` tells it
//! the stop has begun. Without `NOTIFY_SOCKET` nothing is sent. A failure to notify is logged, never fatal.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (`READY=1`, `STOPPING=1`, newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`, when set.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(error) = send(&target, state) {
        tracing::warn!(%error, state, "cannot notify the service manager ({NOTIFY_SOCKET})");
    }
}

/// One datagram with `state` to `target`: an absolute path, or `@name` for the abstract namespace.
fn send(target: &OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    let sent = match bytes.first() {
        Some(b'@') => send_abstract(&socket, &bytes[1..], state)?,
        Some(b'/') => socket.send_to(state.as_bytes(), Path::new(target))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an absolute path nor an abstract name (@...)",
            ));
        }
    };
    if sent != state.len() {
        return Err(std::io::Error::other("the datagram was cut short"));
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &address)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}
