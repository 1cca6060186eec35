//! The exit status a Kubernetes streaming session reports on its error channel (3): from
//! `v4.channel.k8s.io` on, a `metav1.Status` JSON document; before that, plain error text.

use serde::Deserialize;

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    causes: Vec<Cause>,
}

#[derive(Deserialize)]
struct Cause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// What the error channel said: the command's exit code, or why the session failed.
pub fn exit_code(error_channel: &[u8]) -> Result<i32, String> {
    if error_channel.is_empty() {
        return Ok(0);
    }
    let Ok(status) = serde_json::from_slice::<Status>(error_channel) else {
        return Err(String::from_utf8_lossy(error_channel).trim().to_owned());
    };
    if status.status == "Success" {
        return Ok(0);
    }
    if status.reason == "NonZeroExitCode"
        && let Some(code) = status
            .details
            .iter()
            .flat_map(|details| &details.causes)
            .find(|cause| cause.reason == "ExitCode")
            .and_then(|cause| cause.message.parse().ok())
    {
        return Ok(code);
    }
    Err(if status.message.is_empty() {
        format!("the session failed ({})", status.reason)
    } else {
        status.message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_and_exit_codes() {
        assert_eq!(exit_code(b""), Ok(0));
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#), Ok(0));
        assert_eq!(
            exit_code(
                br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
            ),
            Ok(3)
        );
        assert_eq!(
            exit_code(br#"{"status":"Failure","message":"container not running"}"#),
            Err("container not running".to_owned())
        );
        assert_eq!(exit_code(b"plain error\n"), Err("plain error".to_owned()));
    }
}
