//! The command lines the daemon starts the per-container processes with, as the small
//! `carrack-monitor` binary reads them (pure): `monitor <dir>`, `pod-init [<pod_dir>]` and
//! `exec-in <container_dir> --pid <pid> [--tty] -- <argv>...`. The daemon writes them, so
//! the grammar is fixed and small; the `carrack` binary accepts the same through its own
//! command-line parser.

use std::ffi::OsString;
use std::path::PathBuf;

use super::exec_helper::ExecInArgs;

/// One per-container process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `monitor <dir>`: the monitor of the container whose runtime directory is `dir`.
    Monitor {
        /// The container's runtime directory.
        dir: PathBuf,
    },
    /// `pod-init [<pod_dir>]`: the init of a pod's shared PID namespace (the pod directory
    /// names the pod in the process list, and holds the pod's user namespace pin if any).
    PodInit {
        /// The pod's directory.
        pod_dir: Option<PathBuf>,
    },
    /// `exec-in …`: one more process in a running container.
    ExecIn(ExecInArgs),
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// No sub-command was given.
    #[error("missing sub-command (monitor, pod-init or exec-in)")]
    Missing,
    /// The sub-command is not one of ours.
    #[error("unknown sub-command {0:?} (monitor, pod-init or exec-in)")]
    Unknown(OsString),
    /// A sub-command lacks an argument.
    #[error("{command}: missing {what}")]
    MissingArgument {
        /// The sub-command.
        command: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// An argument is not one the sub-command takes, or is malformed.
    #[error("{command}: unexpected argument {argument:?}")]
    Unexpected {
        /// The sub-command.
        command: &'static str,
        /// The argument.
        argument: OsString,
    },
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, CommandError> {
    let mut args = args.into_iter();
    let command = args.next().ok_or(CommandError::Missing)?;
    match command.to_str() {
        Some("monitor") => {
            let dir = args.next().ok_or(CommandError::MissingArgument {
                command: "monitor",
                what: "the runtime directory",
            })?;
            no_more("monitor", args)?;
            Ok(Command::Monitor { dir: dir.into() })
        }
        Some("pod-init") => {
            let pod_dir = args.next().map(PathBuf::from);
            no_more("pod-init", args)?;
            Ok(Command::PodInit { pod_dir })
        }
        Some("exec-in") => parse_exec_in(args).map(Command::ExecIn),
        _ => Err(CommandError::Unknown(command)),
    }
}

/// `exec-in`'s arguments: the directory and the options in any order, then `--` and the
/// program with its arguments.
fn parse_exec_in(mut args: impl Iterator<Item = OsString>) -> Result<ExecInArgs, CommandError> {
    const COMMAND: &str = "exec-in";
    let unexpected = |argument: OsString| CommandError::Unexpected {
        command: COMMAND,
        argument,
    };
    let mut container_dir = None;
    let mut pid = None;
    let mut tty = false;
    let mut argv = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--pid") => {
                let value = args.next().ok_or(CommandError::MissingArgument {
                    command: COMMAND,
                    what: "the value of --pid",
                })?;
                let parsed = value.to_str().and_then(|text| text.parse::<i32>().ok());
                pid = Some(parsed.ok_or_else(|| unexpected(value))?);
            }
            Some("--tty") => tty = true,
            Some("--") => {
                let rest = args
                    .by_ref()
                    .map(|arg| arg.into_string().map_err(unexpected))
                    .collect::<Result<Vec<_>, _>>()?;
                argv = Some(rest);
                break;
            }
            Some(text) if text.starts_with('-') => return Err(unexpected(arg)),
            _ if container_dir.is_none() => container_dir = Some(PathBuf::from(arg)),
            _ => return Err(unexpected(arg)),
        }
    }
    let missing = |what| CommandError::MissingArgument {
        command: COMMAND,
        what,
    };
    let argv = argv
        .filter(|argv| !argv.is_empty())
        .ok_or(missing("the program after --"))?;
    Ok(ExecInArgs {
        container_dir: container_dir.ok_or(missing("the container directory"))?,
        pid: pid.ok_or(missing("--pid"))?,
        tty,
        argv,
    })
}

/// Refuses arguments left over after a sub-command's last one.
fn no_more(
    command: &'static str,
    mut args: impl Iterator<Item = OsString>,
) -> Result<(), CommandError> {
    match args.next() {
        Some(argument) => Err(CommandError::Unexpected { command, argument }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, CommandError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn monitor_takes_one_directory() {
        assert_eq!(
            parse_str(&["monitor", "/run/carrack/containers/ab"]),
            Ok(Command::Monitor {
                dir: PathBuf::from("/run/carrack/containers/ab")
            })
        );
        assert!(matches!(
            parse_str(&["monitor"]),
            Err(CommandError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse_str(&["monitor", "a", "b"]),
            Err(CommandError::Unexpected { .. })
        ));
    }

    #[test]
    fn pod_init_takes_an_optional_pod_directory() {
        assert_eq!(
            parse_str(&["pod-init"]),
            Ok(Command::PodInit { pod_dir: None })
        );
        assert_eq!(
            parse_str(&["pod-init", "/run/c/pods/ab"]),
            Ok(Command::PodInit {
                pod_dir: Some(PathBuf::from("/run/c/pods/ab"))
            })
        );
        assert!(parse_str(&["pod-init", "a", "b"]).is_err());
    }

    #[test]
    fn exec_in_as_the_daemon_writes_it() {
        let expected = ExecInArgs {
            container_dir: PathBuf::from("/run/c/containers/ab"),
            pid: 42,
            tty: true,
            argv: vec!["sh".to_owned(), "-c".to_owned(), "--pid".to_owned()],
        };
        assert_eq!(
            parse_str(&[
                "exec-in",
                "/run/c/containers/ab",
                "--pid",
                "42",
                "--tty",
                "--",
                "sh",
                "-c",
                "--pid"
            ]),
            Ok(Command::ExecIn(expected.clone()))
        );
        // Options before the directory, as a command-line parser accepts them.
        assert_eq!(
            parse_str(&[
                "exec-in",
                "--tty",
                "--pid",
                "42",
                "/run/c/containers/ab",
                "--",
                "sh",
                "-c",
                "--pid"
            ]),
            Ok(Command::ExecIn(expected))
        );
    }

    #[test]
    fn exec_in_refuses_incomplete_or_malformed_lines() {
        for args in [
            &["exec-in", "/d", "--pid", "42"][..],
            &["exec-in", "/d", "--pid", "42", "--"],
            &["exec-in", "/d", "--", "true"],
            &["exec-in", "--pid", "42", "--", "true"],
            &["exec-in", "/d", "--pid", "x", "--", "true"],
            &["exec-in", "/d", "--pid"],
            &["exec-in", "/d", "--pid", "42", "--bogus", "--", "true"],
            &["exec-in", "/d", "/e", "--pid", "42", "--", "true"],
        ] {
            assert!(parse_str(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn unknown_or_missing_sub_commands() {
        assert_eq!(parse_str(&[]), Err(CommandError::Missing));
        assert!(matches!(
            parse_str(&["daemon"]),
            Err(CommandError::Unknown(_))
        ));
    }
}
