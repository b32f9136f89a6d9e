//! From a `ci.yml` service (landscape-spec) to an [`InstanceSpec`].

use crate::{Error, InstanceSpec, Limits, PortPolicy, Process, Result, User};
use landscape_spec::{PlanCatalogue, Service, ServiceKind};
use std::path::Path;

impl InstanceSpec {
    /// The spec of one replica of `service`:
    ///
    /// * steps run through `/bin/sh -c` one after the other (stopping at the first that
    ///   fails); a `command` list runs directly;
    /// * `env` is given already rendered (templates such as `${{ vault.X }}` resolved by
    ///   the host, e.g. with landscape-vault), in order;
    /// * the app directory (or its `mountSubPath` part) is mounted at `/home/user/app`,
    ///   each `volumeMounts` entry at its `mountPath`;
    /// * `runAsUser` / `runAsGroup` become the container user;
    /// * the plan becomes cgroup limits (`plans` must then hold it);
    /// * Managed Containers may bind ports below 1024, Reactives may not.
    ///
    /// The root filesystem is the host base; for a service with an `image`, resolve it
    /// with [`crate::image::ImageStore`] and call [`InstanceSpec::use_image`] (or build
    /// the definition with [`crate::ServiceDef::from_service_with_image`]).
    pub fn for_service(
        service: &Service,
        app_dir: &Path,
        env: Vec<(String, String)>,
        plans: Option<&PlanCatalogue>,
    ) -> Result<InstanceSpec> {
        let name = service.name.value.clone();
        let mut process = if let Some(cmd) = &service.command {
            Process::argv(cmd.value.iter().cloned())
        } else {
            let steps: Vec<String> = service
                .steps
                .iter()
                .flatten()
                .map(|s| s.command.value.clone())
                .collect();
            if steps.is_empty() {
                Process::default()
            } else {
                Process::shell(format!("set -e\n{}", steps.join("\n")))
            }
        };
        process.env = env;
        let mut spec = InstanceSpec::new(sanitize(&name), process);
        spec.hostname = Some(sanitize(&name));
        spec.user = User {
            uid: service.run_as_user.as_ref().map_or(0, |u| u.value),
            gid: service.run_as_group.as_ref().map_or(0, |g| g.value),
        };
        let app = match &service.mount_sub_path {
            Some(sub) if !sub.value.trim_matches('/').is_empty() => {
                let rel = sub.value.trim_matches('/');
                if rel.split('/').any(|c| c == "..") {
                    return Err(Error::InvalidSpec(format!(
                        "service {name:?}: mountSubPath {rel:?} must stay inside the app directory"
                    )));
                }
                app_dir.join(rel)
            }
            _ => app_dir.to_path_buf(),
        };
        spec.app_dir = Some(app);
        for vm in service.volume_mounts() {
            let ws = vm.workspace_path.as_ref().map_or("", |w| w.value.as_str());
            spec.volume(app_dir, ws, &vm.mount_path.value)
                .map_err(|e| Error::InvalidSpec(format!("service {name:?}: {e}")))?;
        }
        if service.kind() == ServiceKind::ManagedContainer {
            spec.ports = PortPolicy::AllowPrivileged;
        }
        if let Some(plan) = &service.plan {
            if let landscape_spec::Plan::Id(id) = plan.value {
                let info = plans.and_then(|c| c.get(id)).ok_or_else(|| {
                    Error::InvalidSpec(format!(
                        "service {name:?}: plan {id} is not in the plan catalogue{}",
                        plans.map_or(String::new(), |c| format!(
                            "; expected one of {:?}",
                            c.ids()
                        ))
                    ))
                })?;
                spec.limits = Some(Limits::from_plan(info));
            }
        }
        Ok(spec)
    }
}

impl InstanceSpec {
    /// Runs this instance on `image`: its root filesystem becomes the read-only lower
    /// layer; without a command of its own (no `command`, no `steps`) the instance runs
    /// the image's entrypoint and cmd in the image's working directory (`/` if it has
    /// none, as with Docker); the image's
    /// environment comes first and the spec's own variables override it by name; with
    /// `image_user` (no `runAsUser` in the spec) the image's numeric `User` is the
    /// container user. Steps run with the image's `/bin/sh`.
    pub fn use_image(&mut self, image: &crate::image::Image, image_user: bool) {
        self.rootfs = crate::Rootfs::Dir(image.rootfs.clone());
        let defaults = image.config.process();
        if self.process.args.is_empty() {
            self.process.args = defaults.args;
            // As Docker: the image's working directory, else `/`.
            self.process.cwd = Some(defaults.cwd.unwrap_or_else(|| "/".to_string()));
        }
        let own = std::mem::take(&mut self.process.env);
        let mut env: Vec<(String, String)> = defaults
            .env
            .into_iter()
            .filter(|(k, _)| !own.iter().any(|(ok, _)| ok == k))
            .collect();
        env.extend(own);
        self.process.env = env;
        if image_user {
            if let Some(u) = image.config.user() {
                self.user = u;
            }
        }
    }
}

/// Instance names allow letters, digits, '-', '_' and '.'.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if s.is_empty() {
        "service".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Image, ImageConfig};

    fn image() -> Image {
        Image {
            rootfs: "/cache/rootfs/x".into(),
            config: ImageConfig {
                entrypoint: Some(vec!["/bin/busybox".into()]),
                cmd: Some(vec!["httpd".into(), "-f".into()]),
                env: Some(vec!["PATH=/bin".into(), "GREETING=image".into()]),
                working_dir: None,
                user: Some("1000:1001".into()),
            },
            digest: None,
        }
    }

    #[test]
    fn an_image_gives_its_process_env_and_user_unless_the_spec_has_its_own() {
        let mut own = InstanceSpec::new("s", Process::shell("echo hi"));
        own.process.env = vec![("GREETING".into(), "mine".into())];
        own.use_image(&image(), false);
        assert_eq!(own.rootfs, crate::Rootfs::Dir("/cache/rootfs/x".into()));
        assert_eq!(own.process.args[0], "/bin/sh", "own steps stay");
        assert_eq!(own.process.cwd, None, "steps run in the app directory");
        assert_eq!(
            own.process.env,
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("GREETING".to_string(), "mine".to_string())
            ]
        );
        assert_eq!(own.user, User { uid: 0, gid: 0 }, "runAsUser wins");

        let mut bare = InstanceSpec::new("s", Process::default());
        bare.use_image(&image(), true);
        assert_eq!(bare.process.args, ["/bin/busybox", "httpd", "-f"]);
        assert_eq!(bare.process.cwd.as_deref(), Some("/"), "Docker's default");
        assert_eq!(
            bare.user,
            User {
                uid: 1000,
                gid: 1001
            }
        );
    }
}
