//! User namespace id mappings: the container's ids always map to unprivileged host ids.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How container ids map to host ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMap {
    /// The runtime runs unprivileged: the one container uid/gid of the instance maps to the
    /// runtime's own uid/gid.
    Single {
        /// Host uid (the runtime's).
        host_uid: u32,
        /// Host gid (the runtime's).
        host_gid: u32,
    },
    /// The runtime runs as root: container ids `0..count` map to a subordinate range of
    /// unprivileged host ids (from `/etc/subuid` / `/etc/subgid`).
    Range {
        /// First host uid.
        uid_start: u32,
        /// First host gid.
        gid_start: u32,
        /// Number of ids.
        count: u32,
    },
}

impl IdMap {
    /// Detects the mapping for the current process: itself when unprivileged, the
    /// subordinate range of `subid_user` when root.
    pub fn detect(subid_user: &str) -> Result<IdMap> {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid != 0 {
            return Ok(IdMap::Single {
                host_uid: uid,
                host_gid: gid,
            });
        }
        let (us, uc) = subordinate_range("/etc/subuid", subid_user)?;
        let (gs, gc) = subordinate_range("/etc/subgid", subid_user)?;
        if us == 0 || gs == 0 {
            return Err(Error::Unsupported(format!(
                "the subordinate range of {subid_user:?} starts at 0 (host root); use an unprivileged range such as {subid_user}:100000:65536"
            )));
        }
        Ok(IdMap::Range {
            uid_start: us,
            gid_start: gs,
            count: uc.min(gc),
        })
    }

    /// Host uid of container uid `uid`, if mapped.
    pub fn host_uid(&self, uid: u32, container_user: u32) -> Option<u32> {
        match *self {
            IdMap::Single { host_uid, .. } => (uid == container_user).then_some(host_uid),
            IdMap::Range {
                uid_start, count, ..
            } => (uid < count).then(|| uid_start + uid),
        }
    }

    /// Host gid of container gid `gid`, if mapped.
    pub fn host_gid(&self, gid: u32, container_group: u32) -> Option<u32> {
        match *self {
            IdMap::Single { host_gid, .. } => (gid == container_group).then_some(host_gid),
            IdMap::Range {
                gid_start, count, ..
            } => (gid < count).then(|| gid_start + gid),
        }
    }

    /// The (uid_map, gid_map, deny_setgroups) contents for an instance running as `user`.
    pub(crate) fn maps(&self, user: crate::User) -> Result<(String, String, bool)> {
        match *self {
            IdMap::Single { host_uid, host_gid } => Ok((
                format!("{} {} 1\n", user.uid, host_uid),
                format!("{} {} 1\n", user.gid, host_gid),
                true,
            )),
            IdMap::Range {
                uid_start,
                gid_start,
                count,
            } => {
                if user.uid >= count || user.gid >= count {
                    return Err(Error::InvalidSpec(format!(
                        "user {}:{} is outside the {count} ids of the subordinate range",
                        user.uid, user.gid
                    )));
                }
                Ok((
                    format!("0 {uid_start} {count}\n"),
                    format!("0 {gid_start} {count}\n"),
                    false,
                ))
            }
        }
    }
}

/// Finds `user`'s (or its uid's) first range in an `/etc/subuid`-style file.
fn subordinate_range(file: &str, user: &str) -> Result<(u32, u32)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    parse_subid(&text, user).ok_or_else(|| {
        Error::Unsupported(format!(
            "no subordinate id range for {user:?} in {file}; the runtime runs as root and maps containers to unprivileged ids: add a line like `{user}:100000:65536` to {file} (scripts/setup.d/runtime.sh does)"
        ))
    })
}

pub(crate) fn parse_subid(text: &str, user: &str) -> Option<(u32, u32)> {
    let uid = if user == "root" { Some("0") } else { None };
    text.lines().find_map(|l| {
        let mut it = l.trim().split(':');
        let (name, start, count) = (it.next()?, it.next()?, it.next()?);
        if name == user || Some(name) == uid {
            Some((start.parse().ok()?, count.parse().ok().filter(|c| *c > 0)?))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_are_parsed() {
        let t = "# c\nalice:200000:65536\nroot:100000:65536\n";
        assert_eq!(parse_subid(t, "root"), Some((100000, 65536)));
        assert_eq!(parse_subid(t, "alice"), Some((200000, 65536)));
        assert_eq!(parse_subid(t, "bob"), None);
        assert_eq!(parse_subid("0:5:7\n", "root"), Some((5, 7)));
        assert_eq!(parse_subid("root:1:0\n", "root"), None);
    }

    #[test]
    fn maps_never_map_host_root() {
        let m = IdMap::Range {
            uid_start: 100000,
            gid_start: 100000,
            count: 65536,
        };
        let (u, g, deny) = m
            .maps(crate::User {
                uid: 1000,
                gid: 1000,
            })
            .unwrap();
        assert_eq!(u, "0 100000 65536\n");
        assert_eq!(g, "0 100000 65536\n");
        assert!(!deny);
        assert_eq!(m.host_uid(1000, 0), Some(101000));
        assert!(m.maps(crate::User { uid: 70000, gid: 0 }).is_err());
        let s = IdMap::Single {
            host_uid: 1000,
            host_gid: 1000,
        };
        let (u, _, deny) = s.maps(crate::User { uid: 0, gid: 0 }).unwrap();
        assert_eq!(u, "0 1000 1\n");
        assert!(deny);
    }
}
