//! The final status of an exec or attach on the `error` stream: from protocol v4 on the
//! Kubernetes `Status` JSON (`NonZeroExitCode` with an `ExitCode` cause), before that the bare
//! message of a failure and nothing on success, as kubelet writes it.

use serde::Serialize;

/// How the status is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// `v4.channel.k8s.io` and later: a JSON `Status` object.
    Json,
    /// Older protocols: the failure message as text, nothing on success.
    Text,
}

/// How an exec or attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0, or an attach that ended.
    Success,
    /// The command exited with this non-zero code.
    ExitCode {
        /// The command, for the message (`[sh -c exit 3]`, as Go prints a slice).
        cmd: Vec<String>,
        /// Its code.
        code: i32,
    },
    /// The runtime failed.
    Internal(String),
}

#[derive(Serialize)]
struct Status {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

impl Outcome {
    /// The bytes for the `error` stream in `format` (empty: write nothing).
    pub fn encode(&self, format: StatusFormat) -> Vec<u8> {
        let status = self.status();
        match format {
            // Serialising plain structs of strings cannot fail.
            StatusFormat::Json => serde_json::to_vec(&status).unwrap_or_default(),
            StatusFormat::Text => status.message.unwrap_or_default().into_bytes(),
        }
    }

    fn status(&self) -> Status {
        match self {
            Self::Success => Status {
                metadata: Empty {},
                status: "Success",
                message: None,
                reason: None,
                details: None,
                code: None,
            },
            Self::ExitCode { cmd, code } => Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    cmd.join(" ")
                )),
                reason: Some("NonZeroExitCode"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: code.to_string(),
                    }],
                }),
                code: None,
            },
            Self::Internal(message) => Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(format!("Internal error occurred: {message}")),
                reason: Some("InternalError"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: message.clone(),
                    }],
                }),
                code: Some(500),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(outcome: &Outcome) -> String {
        String::from_utf8(outcome.encode(StatusFormat::Json)).unwrap()
    }

    #[test]
    fn success_is_the_bare_status() {
        assert_eq!(
            json(&Outcome::Success),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert!(Outcome::Success.encode(StatusFormat::Text).is_empty());
    }

    #[test]
    fn a_non_zero_exit_carries_the_code_as_a_cause() {
        let outcome = Outcome::ExitCode {
            cmd: vec!["sh".into(), "-c".into(), "exit 3".into()],
            code: 3,
        };
        assert_eq!(
            json(&outcome),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert!(
            String::from_utf8(outcome.encode(StatusFormat::Text))
                .unwrap()
                .ends_with("exit code 3")
        );
    }

    #[test]
    fn a_runtime_failure_is_an_internal_error() {
        let text = json(&Outcome::Internal("no such container".into()));
        assert_eq!(
            text,
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: no such container","reason":"InternalError","details":{"causes":[{"message":"no such container"}]},"code":500}"#
        );
    }
}
