//! `ambit-cni`: the chained CNI plugin that tells this node's proxy about pods. Install it in the
//! CNI bin directory and append it to the pod network's conflist (see `deploy/cni/`).
//!
//! ADD answers only after the node proxy has put capture in place, so an enrolled pod's
//! containers never start uncaptured. If the node proxy cannot be reached, ADD fails with "try
//! again later" and the kubelet retries. DEL is best-effort: a node proxy that missed it forgets
//! the pod when it finds the pod's network namespace gone.

use std::{
    io::{Read, Write},
    process::ExitCode,
};

use ambit_common::{
    cni::{self, CniError, Command, code},
    pod_api::{ClientError, PodApiClient},
};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(CniError::new(code::DECODING_FAILURE, format!("reading stdin: {e}")));
    }
    match run(&stdin) {
        Ok(output) => {
            if let Some(output) = output {
                let _ = writeln!(std::io::stdout(), "{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn run(stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let invocation = cni::parse(|key| std::env::var(key).ok(), stdin)?;
    let Some(conf) = &invocation.conf else {
        return Ok(Some(cni::version_info()));
    };
    let client = PodApiClient::new(conf.socket.clone());
    match invocation.command {
        Command::Version => Ok(Some(cni::version_info())),
        Command::Add => {
            let pod = invocation.pod_spec(host_name)?;
            client.add(&pod).map_err(node_proxy_error)?;
            // A chained plugin passes the previous result on unchanged.
            Ok(conf.prev_result.clone())
        }
        Command::Del => {
            match client.delete(invocation.pod_uid()?) {
                Ok(()) | Err(ClientError::Connect { .. }) => {}
                Err(e) => return Err(node_proxy_error(e)),
            }
            Ok(None)
        }
        Command::Check => match client.get(invocation.pod_uid()?).map_err(node_proxy_error)? {
            Some(_) => Ok(None),
            None => Err(CniError::new(code::NODE_PROXY_ERROR, "the node proxy does not know this pod")),
        },
    }
}

fn node_proxy_error(e: ClientError) -> CniError {
    let code = match e {
        ClientError::Connect { .. } => code::TRY_AGAIN_LATER,
        _ => code::NODE_PROXY_ERROR,
    };
    CniError::new(code, e.to_string())
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

fn fail(error: CniError) -> ExitCode {
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(&error).unwrap_or_else(|_| error.msg.clone()));
    ExitCode::FAILURE
}
