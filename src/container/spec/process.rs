//! The process's argv, environment and working directory, from the request and the image.

use std::path::PathBuf;

use super::SpecError;
use crate::image_service::manifest::ContainerDefaults;

/// `PATH` when neither the image nor the request sets one (the OCI/runc default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argv, by the rules kubelet documents and Docker and containerd apply:
/// - a CRI `command` replaces the image's `Entrypoint`, and then the image's `Cmd` is not used
///   (only the CRI `args`);
/// - CRI `args` alone replace the image's `Cmd` and keep its `Entrypoint`;
/// - neither: the image's `Entrypoint` followed by its `Cmd`.
///
/// An image `Entrypoint` of exactly `[""]` means "no entrypoint" (Docker's way of resetting it).
pub fn argv(
    command: &[String],
    args: &[String],
    image: &ContainerDefaults,
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = if command.is_empty() {
        let entrypoint = image.entrypoint.as_deref().unwrap_or_default();
        let mut argv = if entrypoint.len() == 1 && entrypoint.first().is_some_and(String::is_empty)
        {
            Vec::new()
        } else {
            entrypoint.to_vec()
        };
        if args.is_empty() {
            argv.extend(image.cmd.iter().flatten().cloned());
        } else {
            argv.extend(args.iter().cloned());
        }
        argv
    } else {
        command.iter().chain(args).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if argv.first().is_some_and(String::is_empty) {
        // Nothing can be executed by an empty name; say so here rather than at start.
        return Err(SpecError::invalid("command", "the program name is empty"));
    }
    Ok(argv)
}

/// The environment: `PATH` (default), `HOSTNAME`, `TERM=xterm` with a tty, then the image's
/// `Env`, then the request's, each later value of a key replacing the earlier one in place (so
/// the order stays stable). An image entry without `=` removes the key, as in Docker.
pub fn environment(
    image: &ContainerDefaults,
    envs: &[(String, String)],
    hostname: &str,
    tty: bool,
) -> Result<Vec<String>, SpecError> {
    let mut env = Environment::default();
    env.set("PATH", DEFAULT_PATH);
    if !hostname.is_empty() {
        env.set("HOSTNAME", hostname);
    }
    if tty {
        env.set("TERM", "xterm");
    }
    for entry in image.env.iter().flatten() {
        match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => env.set(key, value),
            Some(_) => {}
            None => env.remove(entry),
        }
    }
    for (at, (key, value)) in envs.iter().enumerate() {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(SpecError::invalid(
                format!("envs[{at}]"),
                format!("{key:?} is not a usable variable name (or its value has a NUL byte)"),
            ));
        }
        env.set(key, value);
    }
    Ok(env.0)
}

/// `KEY=value` strings with set/remove by key.
#[derive(Default)]
struct Environment(Vec<String>);

impl Environment {
    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|entry| {
            entry
                .split_once('=')
                .is_some_and(|(existing, _)| existing == key)
        })
    }

    fn set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.position(key).and_then(|at| self.0.get_mut(at)) {
            Some(slot) => *slot = entry,
            None => self.0.push(entry),
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(at) = self.position(key) {
            self.0.remove(at);
        }
    }
}

/// The working directory: the request's (which must be absolute), else the image's (made
/// absolute, as Docker does with a relative `WORKDIR`), else `/`.
pub fn working_dir(requested: &str, image: &ContainerDefaults) -> Result<PathBuf, SpecError> {
    if !requested.is_empty() {
        if !requested.starts_with('/') {
            return Err(SpecError::RelativePath {
                field: "working_dir".to_owned(),
                path: requested.to_owned(),
            });
        }
        return Ok(PathBuf::from(requested));
    }
    match image.working_dir.as_deref() {
        Some(dir) if dir.starts_with('/') => Ok(PathBuf::from(dir)),
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(format!("/{dir}"))),
        _ => Ok(PathBuf::from("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn defaults(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerDefaults {
        ContainerDefaults {
            entrypoint: entrypoint.map(strings),
            cmd: cmd.map(strings),
            ..ContainerDefaults::default()
        }
    }

    #[test]
    fn a_command_replaces_entrypoint_and_drops_the_image_cmd() {
        let image = defaults(Some(&["/entry"]), Some(&["default-arg"]));
        let argv = argv(&strings(&["top"]), &[], &image).expect("argv");
        assert_eq!(argv, ["top"]);
        let argv = argv_of(&["sh", "-c"], &["echo hi"], &image);
        assert_eq!(argv, ["sh", "-c", "echo hi"]);
    }

    fn argv_of(command: &[&str], args: &[&str], image: &ContainerDefaults) -> Vec<String> {
        argv(&strings(command), &strings(args), image).expect("argv")
    }

    #[test]
    fn args_alone_replace_cmd_and_keep_the_entrypoint() {
        let image = defaults(Some(&["/entry", "--flag"]), Some(&["default-arg"]));
        assert_eq!(
            argv_of(&[], &["mine"], &image),
            ["/entry", "--flag", "mine"]
        );
        let no_entrypoint = defaults(None, Some(&["sh"]));
        assert_eq!(argv_of(&[], &["top", "-b"], &no_entrypoint), ["top", "-b"]);
    }

    #[test]
    fn neither_gives_entrypoint_then_cmd() {
        let image = defaults(Some(&["/entry"]), Some(&["a", "b"]));
        assert_eq!(argv_of(&[], &[], &image), ["/entry", "a", "b"]);
        let busybox = defaults(None, Some(&["sh"]));
        assert_eq!(argv_of(&[], &[], &busybox), ["sh"]);
        let reset = defaults(Some(&[""]), Some(&["sh"]));
        assert_eq!(
            argv_of(&[], &[], &reset),
            ["sh"],
            "Entrypoint [\"\"] is no entrypoint"
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let empty = defaults(None, None);
        assert!(matches!(argv(&[], &[], &empty), Err(SpecError::NoCommand)));
        let reset = defaults(Some(&[""]), None);
        assert!(matches!(argv(&[], &[], &reset), Err(SpecError::NoCommand)));
        assert!(matches!(
            argv(&strings(&[""]), &[], &empty),
            Err(SpecError::Invalid { .. })
        ));
    }

    fn env_of(image_env: &[&str], envs: &[(&str, &str)], tty: bool) -> Vec<String> {
        let image = ContainerDefaults {
            env: Some(strings(image_env)),
            ..ContainerDefaults::default()
        };
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        environment(&image, &envs, "pod-host", tty).expect("env")
    }

    #[test]
    fn image_env_then_request_env_later_wins_in_place() {
        let env = env_of(
            &["PATH=/bin", "A=image", "B=image"],
            &[("B", "request"), ("C", "new"), ("A", "x=y")],
            false,
        );
        assert_eq!(
            env,
            [
                "PATH=/bin",
                "HOSTNAME=pod-host",
                "A=x=y",
                "B=request",
                "C=new"
            ]
        );
    }

    #[test]
    fn path_defaults_and_hostname_and_term_can_be_overridden() {
        let env = env_of(&[], &[], true);
        assert_eq!(
            env,
            [
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=pod-host".to_owned(),
                "TERM=xterm".to_owned()
            ]
        );
        let env = env_of(&["TERM=vt100"], &[("HOSTNAME", "mine")], true);
        assert!(env.contains(&"TERM=vt100".to_owned()));
        assert!(env.contains(&"HOSTNAME=mine".to_owned()));
        let env = env_of(&["HOSTNAME"], &[], false);
        assert!(!env.iter().any(|e| e.starts_with("HOSTNAME")), "{env:?}");
    }

    #[test]
    fn bad_variable_names_are_refused() {
        let image = ContainerDefaults::default();
        for key in ["", "A=B", "A\0"] {
            let envs = vec![(key.to_owned(), "v".to_owned())];
            let err = environment(&image, &envs, "", false).expect_err(key);
            assert!(err.to_string().contains("envs[0]"), "{err}");
        }
    }

    #[test]
    fn working_dir_request_then_image_then_root() {
        let image = ContainerDefaults {
            working_dir: Some("/srv".to_owned()),
            ..ContainerDefaults::default()
        };
        assert_eq!(
            working_dir("/data", &image).expect("cwd"),
            PathBuf::from("/data")
        );
        assert_eq!(working_dir("", &image).expect("cwd"), PathBuf::from("/srv"));
        let relative = ContainerDefaults {
            working_dir: Some("app".to_owned()),
            ..ContainerDefaults::default()
        };
        assert_eq!(
            working_dir("", &relative).expect("cwd"),
            PathBuf::from("/app")
        );
        assert_eq!(
            working_dir("", &ContainerDefaults::default()).expect("cwd"),
            PathBuf::from("/")
        );
        assert!(matches!(
            working_dir("tmp", &image),
            Err(SpecError::RelativePath { .. })
        ));
    }
}
