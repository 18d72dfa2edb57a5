//! `kontor agent ...`: the device side on the command line. Human output by
//! default, `--json` for scripts. The PIN comes from `KONTOR_PIN` or, when
//! that is unset, from the first line of standard input.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use kontor_agent::agent::{Agent, Conversation, EnrollOptions, Received};
use kontor_agent::command::BROADCAST_KIND;
use kontor_agent::store::StoredMessage;

/// `kontor agent` options.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The device's data directory.
    #[arg(long, default_value = "kontor-agent", env = "KONTOR_AGENT_DIR")]
    dir: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AgentCommand,
}

/// `kontor agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enroll zero-touch from the managed configuration the EMM delivered.
    Enroll {
        /// The managed configuration (Apple plist, Android bundle JSON, JSON).
        #[arg(long)]
        config: PathBuf,
        /// The organisation's root CA (PEM), to trust the server.
        #[arg(long)]
        ca: PathBuf,
        /// A name for this device.
        #[arg(long, default_value = "kontor agent")]
        device_name: String,
        /// The platform to report.
        #[arg(long, default_value = "linux")]
        platform: String,
    },
    /// Show this device's state.
    Status,
    /// Send a text to a user (`USER` or `user:USER`) or a group (`group:ID`).
    Send {
        /// The conversation.
        #[arg(long)]
        to: String,
        /// The text.
        text: String,
    },
    /// Send a file, if the policy allows its kind.
    SendFile {
        /// The conversation.
        #[arg(long)]
        to: String,
        /// The file.
        #[arg(long)]
        file: PathBuf,
        /// Its media type.
        #[arg(long, default_value = "application/octet-stream")]
        media_type: String,
    },
    /// Save the file of stored message INDEX (as `inbox` numbers them).
    FetchFile {
        /// The message.
        #[arg(long)]
        index: usize,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy the text of stored message INDEX out of Kontor (if the policy allows).
    Copy {
        /// The message.
        #[arg(long)]
        index: usize,
    },
    /// Create a group; you become its admin.
    GroupCreate {
        /// The group's name.
        #[arg(long)]
        name: String,
        /// Members (user ids).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// List your groups.
    Groups,
    /// Fetch what is waiting: messages, policy updates, a wipe.
    Receive,
    /// Listen live for SECONDS, printing messages as they arrive.
    Listen {
        /// How long to listen.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Show the stored messages.
    Inbox,
    /// Show the safety numbers with a user's devices.
    Verify {
        /// The other user.
        #[arg(long)]
        user: String,
    },
    /// Wipe this device's data.
    Wipe,
}

fn pin() -> anyhow::Result<String> {
    if let Ok(pin) = std::env::var("KONTOR_PIN") {
        return Ok(pin);
    }
    eprint!("PIN: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the PIN from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn print(json: bool, value: serde_json::Value, human: impl FnOnce()) {
    if json {
        println!("{value}");
    } else {
        human();
    }
}

/// One message for people: a broadcast reads as from the administration
/// (its kind decides, which only the relay's command channel can set; never
/// a user id).
fn line(m: &StoredMessage) -> String {
    if m.kind == BROADCAST_KIND {
        format!("from the administration ({}): {}", m.conversation, m.text)
    } else {
        format!("{} ({}): {}", m.from_user, m.conversation, m.text)
    }
}

/// One message for scripts: the stored fields and `from_administration`.
fn message_json(m: &StoredMessage) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(m)?;
    value["from_administration"] = serde_json::Value::Bool(m.kind == BROADCAST_KIND);
    Ok(value)
}

fn received_json(received: &Received) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(received)?;
    value["messages"] = received
        .messages
        .iter()
        .map(message_json)
        .collect::<anyhow::Result<_>>()?;
    Ok(value)
}

/// What the administration's commands did, for people.
fn print_commands(received: &Received) {
    for a in &received.archives {
        match &a.reason {
            None => println!(
                "archive request {}: exported {} message(s) in {} part(s) for the administration",
                a.request, a.messages, a.parts
            ),
            Some(why) => println!("archive request {}: refused ({why})", a.request),
        }
    }
    for why in &received.refused_commands {
        println!("refused a command: {why}");
    }
}

/// Runs a `kontor agent` subcommand.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    match args.command {
        AgentCommand::Enroll {
            config,
            ca,
            device_name,
            platform,
        } => {
            let managed = std::fs::read(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let ca_pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?;
            let pin = pin()?;
            let agent = Agent::enroll(
                dir,
                EnrollOptions {
                    managed_config: &managed,
                    ca_pem: &ca_pem,
                    pin: &pin,
                    device_name: &device_name,
                    platform: &platform,
                },
            )
            .await?;
            let status = agent.status()?;
            print(args.json, serde_json::to_value(&status)?, || {
                println!(
                    "enrolled {} as device {}; relay {}",
                    status.user, status.device_id, status.relay_url
                );
            });
        }
        AgentCommand::Status => {
            let status = Agent::open(dir, &pin()?)?.status()?;
            print(args.json, serde_json::to_value(&status)?, || {
                println!(
                    "user {}\ndevice {}\nrelay {}\nmessages {}",
                    status.user, status.device_id, status.relay_url, status.messages
                );
            });
        }
        AgentCommand::Send { to, text } => {
            let agent = Agent::open(dir, &pin()?)?;
            let sent = agent.send_text(&Conversation::parse(&to)?, &text).await?;
            print(args.json, serde_json::to_value(&sent)?, || {
                for change in &sent.key_changes {
                    println!(
                        "warning: the identity key of {change} changed; compare safety numbers (kontor agent verify)"
                    );
                }
                println!("sent to {to} ({} devices)", sent.devices);
            });
        }
        AgentCommand::SendFile {
            to,
            file,
            media_type,
        } => {
            let agent = Agent::open(dir, &pin()?)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let sent = agent
                .send_file(&Conversation::parse(&to)?, &name, &media_type, &bytes)
                .await?;
            print(args.json, serde_json::to_value(&sent)?, || {
                println!("sent {name} to {to} ({} devices)", sent.devices)
            });
        }
        AgentCommand::FetchFile { index, out } => {
            let agent = Agent::open(dir, &pin()?)?;
            let (attachment, bytes) = agent.fetch_file(index).await?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            print(
                args.json,
                serde_json::json!({ "name": attachment.name, "size": bytes.len() }),
                || {
                    println!(
                        "saved {} ({} bytes) to {}",
                        attachment.name,
                        bytes.len(),
                        out.display()
                    );
                },
            );
        }
        AgentCommand::Copy { index } => {
            let text = Agent::open(dir, &pin()?)?.export_text(index)?;
            print(args.json, serde_json::json!({ "text": text }), || {
                println!("{text}")
            });
        }
        AgentCommand::GroupCreate { name, members } => {
            let id = Agent::open(dir, &pin()?)?
                .create_group(&name, &members)
                .await?;
            print(args.json, serde_json::json!({ "group": id }), || {
                println!("created group:{id}")
            });
        }
        AgentCommand::Groups => {
            let groups = Agent::open(dir, &pin()?)?.groups().await?;
            print(args.json, groups.clone(), || {
                for g in groups.as_array().into_iter().flatten() {
                    println!(
                        "group:{} {} ({} members)",
                        g["id"].as_str().unwrap_or(""),
                        g["name"].as_str().unwrap_or(""),
                        g["members"].as_array().map_or(0, Vec::len)
                    );
                }
            });
        }
        AgentCommand::Receive => {
            let agent = Agent::open(dir, &pin()?)?;
            let (_, received) = agent.receive().await?;
            print(args.json, received_json(&received)?, || {
                if received.wiped {
                    println!("this device was wiped by the administration");
                }
                for m in &received.messages {
                    println!("{}", line(m));
                }
                for why in &received.dropped {
                    println!("dropped a message: {why}");
                }
                if received.policy_updates > 0 {
                    println!("applied {} policy update(s)", received.policy_updates);
                }
                print_commands(&received);
            });
        }
        AgentCommand::Listen { seconds } => {
            let agent = Agent::open(dir, &pin()?)?;
            let json = args.json;
            let (_, received) = agent
                .listen(std::time::Duration::from_secs(seconds), |m| {
                    if json {
                        // Serializing a stored message cannot fail: strings and numbers only.
                        let value = message_json(m).unwrap_or_default();
                        println!("{}", serde_json::json!({ "message": value }));
                    } else {
                        println!("{}", line(m));
                    }
                })
                .await?;
            if json {
                if !received.archives.is_empty() || !received.refused_commands.is_empty() {
                    println!(
                        "{}",
                        serde_json::json!({
                            "archives": received.archives,
                            "refused_commands": received.refused_commands,
                        })
                    );
                }
            } else {
                print_commands(&received);
            }
            if received.wiped {
                print(json, serde_json::json!({ "wiped": true }), || {
                    println!("this device was wiped by the administration")
                });
            }
        }
        AgentCommand::Inbox => {
            let messages = Agent::open(dir, &pin()?)?.inbox()?;
            let value = messages
                .iter()
                .map(message_json)
                .collect::<anyhow::Result<_>>()?;
            print(args.json, value, || {
                for (i, m) in messages.iter().enumerate() {
                    let arrow = if m.outgoing { "->" } else { "<-" };
                    if m.kind == BROADCAST_KIND {
                        println!("{i:>3} {arrow} {}", line(m));
                    } else {
                        println!(
                            "{i:>3} {arrow} {} {}: {}",
                            m.conversation, m.from_user, m.text
                        );
                    }
                }
            });
        }
        AgentCommand::Verify { user } => {
            let numbers = Agent::open(dir, &pin()?)?.safety_number(&user).await?;
            print(args.json, serde_json::json!(numbers), || {
                for (device, number) in &numbers {
                    println!("{user} device {device}:\n  {number}");
                }
            });
        }
        AgentCommand::Wipe => {
            Agent::open(dir, &pin()?)?.wipe()?;
            print(args.json, serde_json::json!({ "wiped": true }), || {
                println!("wiped {}", dir.display())
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
