//! What the agent reads from the relay besides sealed messages: commands
//! (wipe, policy, broadcast, archive) as JSON, as `GET /v1/commands` lists
//! them and the WebSocket sends them, checked by the agent before it acts;
//! a policy command's keys then go through managed-config's decoder.
#![no_main]

use kontor_agent::command::{self, Incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // One command, a list of them, or a WebSocket `{"command": ...}` frame.
    let commands: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => vec![other, &other["command"]],
    };
    for value in commands {
        let Some(incoming) = Incoming::from_json(value) else {
            continue;
        };
        match command::parse(&incoming) {
            Ok(command::Command::Policy(payload)) => {
                let _ = kontor_managed_config::decode::json(payload.to_string().as_bytes());
            }
            Ok(_) => {}
            Err(refusal) => {
                let _ = refusal.receipt();
            }
        }
    }
});
