//! The Unix socket file: probing for a live daemon, binding with its permissions (0600, or 0660 for
//! `socket_group`), and removing it at stop only when it is still ours.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::net::UnixListener;

use super::DaemonError;

/// Creates a directory hookd owns (data dir, socket dir) as 0700 when it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let fail = |source| DaemonError::Socket {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}

/// What is at the socket's path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// Nothing.
    Absent,
    /// A file nothing answers on: a socket left by a daemon that did not stop cleanly.
    Stale,
    /// A socket something accepts connections on.
    Live,
}

/// Tries to connect to `path`: whether a daemon answers there. An error that says neither (no permission
/// to connect) is refused rather than guessed at: the file may be another user's live socket.
pub(super) fn probe_socket(path: &Path) -> Result<Probe, DaemonError> {
    use std::io::ErrorKind;
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(Probe::Live),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Probe::Absent),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(Probe::Stale),
        Err(source) => Err(DaemonError::Socket {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The file a bound socket is (device, inode), so that a stop removes this daemon's socket and nobody
/// else's.
pub(super) type SocketFile = Option<(u64, u64)>;

fn socket_file(path: &Path) -> SocketFile {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Removes the socket file if it is still the one this daemon bound.
pub(super) fn remove_socket(path: &Path, ours: SocketFile) {
    if ours.is_some() && socket_file(path) == ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds the socket: its directory is created private (0700) when missing, a stale socket file (one nothing
/// answers on) is removed, a live one refused, and the socket is made 0600, or, with `socket_group`, given
/// to that group (name and gid, looked up by `run` before anything else) and made 0660.
pub(super) fn bind_socket(
    path: &Path,
    group: Option<(&str, u32)>,
) -> Result<(UnixListener, SocketFile), DaemonError> {
    let fail = |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    match probe_socket(path)? {
        Probe::Absent => {}
        Probe::Live => {
            return Err(DaemonError::SocketInUse {
                path: path.to_owned(),
            });
        }
        Probe::Stale => match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed a stale socket file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        },
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    let file = socket_file(path);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    if let Some((name, gid)) = group {
        // Owner-only until the group is right, so no other group ever gets a window.
        let given = std::os::unix::fs::chown(path, None, Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)));
        if let Err(source) = given {
            let _ = std::fs::remove_file(path);
            return Err(DaemonError::SocketGroup {
                group: name.to_owned(),
                path: path.to_owned(),
                source,
            });
        }
        warn_if_group_cannot_reach(path, gid);
    }
    Ok((listener, file))
}

/// The gid of `socket_group`: a group name known to the system (NSS included), else a numeric gid.
pub(super) fn socket_gid(name: &str, path: &Path) -> Result<u32, DaemonError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => name.parse::<u32>().map_err(|_| DaemonError::UnknownGroup {
            group: name.to_owned(),
        }),
        Err(errno) => Err(DaemonError::SocketGroup {
            group: name.to_owned(),
            path: path.to_owned(),
            source: std::io::Error::from(errno),
        }),
    }
}

/// A group-owned socket is useless if the group cannot search the directory it lives in (the data dir, by
/// default, is 0700): say so at start rather than leave the operator puzzling over `EACCES`.
fn warn_if_group_cannot_reach(path: &Path, gid: u32) {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.mode();
    let reachable = mode & 0o001 != 0 || (meta.gid() == gid && mode & 0o010 != 0);
    if !reachable {
        tracing::warn!(
            socket = %path.display(),
            directory = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "socket_group members cannot reach the socket: its directory does not let the group search it"
        );
    }
}
