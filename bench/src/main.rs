//! `bench`: runs Kontor, Prosody and ejabberd through the same workloads on
//! this machine and writes the figures for BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p bench -- all        # setup, every system, every workload
//! cargo run --release -p bench -- smoke      # a tiny configuration (CI)
//! cargo run --release -p bench -- run --systems kontor-sqlite --workloads one-to-one
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::kontor::{KontorOptions, KontorPeer, Store};
use bench::load::{self, Outcome, median};
use bench::peer::Peer;
use bench::report::{self, Series, short};
use bench::{procfs, xmpp};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Kontor's load harness: Kontor against Prosody and ejabberd")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Installs the peers (Debian's prosody, ejabberd) and builds `kontor`.
    Setup,
    /// Setup, then every system through every workload, then the report.
    All(RunArgs),
    /// Systems through workloads.
    Run(RunArgs),
    /// A tiny configuration of every workload (CI): checks the harness runs.
    Smoke(RunArgs),
    /// The crypto and provisioning figures: criterion benchmarks and
    /// `openssl speed` in the same run (scripts/bench_crypto.py, then
    /// `cargo bench -p kontor-provisioning` and `openssl speed ecdsap256`).
    Crypto {
        /// Where the outputs go.
        #[arg(long, default_value = "target/bench-results")]
        out: PathBuf,
    },
    /// Rewrites the report (Markdown and SVG) from a results file.
    Report {
        /// The results file a run wrote.
        results: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Systems under test.
    #[arg(long, value_delimiter = ',', default_values = ["kontor-sqlite", "kontor-postgres", "kontor-2nodes", "prosody", "ejabberd"])]
    systems: Vec<System>,
    /// Workloads.
    #[arg(long, value_delimiter = ',', default_values = ["one-to-one", "groups", "store-forward", "idle", "storm"])]
    workloads: Vec<Workload>,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where results, charts and logs go.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
    /// The `kontor` binary (a release build; `setup` builds it).
    #[arg(long, default_value = "target/release/kontor")]
    kontor: PathBuf,
    /// PostgreSQL for the scale-out systems.
    #[arg(
        long,
        env = "KONTOR_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres: String,
    /// NATS for the scale-out systems.
    #[arg(
        long,
        env = "KONTOR_TEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats: String,
    /// Payload sizes for 1:1.
    #[arg(long, value_delimiter = ',', default_values_t = [256usize, 4096, 65536])]
    sizes: Vec<usize>,
    /// Idle connections to hold.
    #[arg(long, default_value_t = 19_000)]
    idle: usize,
    /// Messages in the store-and-forward workload.
    #[arg(long, default_value_t = 100_000)]
    sf_messages: usize,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 4.0)]
    step_seconds: f64,
    /// The 1:1 ladder's first rate (messages per second). A higher start
    /// with long steps holds a system at one rate, to profile it there.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate)]
    first_rate: f64,
    /// One more argument for every `kontor serve` the harness starts
    /// (repeat it), to compare settings of one build, e.g.
    /// `--kontor-serve-arg=--handoff-wait-ms --kontor-serve-arg=0`.
    #[arg(long, allow_hyphen_values = true)]
    kontor_serve_arg: Vec<String>,
}

/// A rate for `--first-rate`: a finite number above zero.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err(format!("{text} is not a rate above zero")),
        Err(e) => Err(format!("{text} is not a number: {e}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    KontorSqlite,
    KontorPostgres,
    /// Two nodes with NATS, each limited to half a core, against one node
    /// limited to half a core (the scale-out figure on a 2-core machine).
    #[value(name = "kontor-2nodes")]
    Kontor2nodes,
    Prosody,
    Ejabberd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    OneToOne,
    Groups,
    StoreForward,
    Idle,
    Storm,
}

/// Sizes of one pass: the full one and the smoke test's.
#[derive(Clone, Copy)]
struct Plan {
    users: usize,
    pairs: usize,
    first_rate: f64,
    rate_factor: f64,
    max_steps: usize,
    step_seconds: f64,
    group_size: usize,
    group_count: usize,
    group_first_rate: f64,
    sf_messages: usize,
    idle: usize,
    storm_seconds: f64,
    storm_concurrency: usize,
}

const P99_LIMIT_MS: f64 = 50.0;
/// Server core and generator core.
const SERVER_CPU: usize = 0;
const GENERATOR_CPU: usize = 1;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup(),
        Cmd::Report { results } => {
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a results file", results.display()))?;
            let dir = results.parent().map(PathBuf::from).unwrap_or_default();
            write_report(&value, &dir)
        }
        Cmd::Crypto { out } => crypto(&out),
        Cmd::All(args) => {
            setup()?;
            crypto(&args.out)?;
            run(&args, full_plan(&args))
        }
        Cmd::Run(args) => run(&args, full_plan(&args)),
        Cmd::Smoke(args) => {
            let plan = Plan {
                users: 8,
                pairs: 2,
                first_rate: 50.0,
                rate_factor: 2.0,
                max_steps: 2,
                step_seconds: 0.5,
                group_size: 4,
                group_count: 1,
                group_first_rate: 20.0,
                sf_messages: 200,
                idle: 20,
                storm_seconds: 0.5,
                storm_concurrency: 2,
            };
            let args = RunArgs {
                runs: 1,
                sizes: vec![256],
                ..args
            };
            run(&args, plan)?;
            smoke_check(&args.out.join("results.json"))
        }
    }
}

/// The smoke run's verdict: timings on a busy CI machine mean nothing, but
/// every system must have delivered, lost nothing and duplicated nothing.
fn smoke_check(results: &std::path::Path) -> anyhow::Result<()> {
    let value: Value = serde_json::from_slice(&std::fs::read(results)?)?;
    let mut problems = Vec::new();
    for (system, s) in value["systems"].as_object().into_iter().flatten() {
        for (workload, w) in s.as_object().into_iter().flatten() {
            let mut outcomes = Vec::new();
            collect_outcomes(w, &mut outcomes);
            if workload.starts_with("one_to_one") || workload == "groups" {
                let delivered: u64 = outcomes
                    .iter()
                    .filter_map(|o| o["delivered"].as_u64())
                    .sum();
                if delivered == 0 {
                    problems.push(format!("{system} {workload}: nothing delivered"));
                }
            }
            for o in outcomes {
                let (lost, dup) = (
                    o["lost"].as_u64().unwrap_or(0),
                    o["duplicated"].as_u64().unwrap_or(0),
                );
                if lost > 0 || dup > 0 {
                    problems.push(format!(
                        "{system} {workload}: {lost} lost, {dup} duplicated"
                    ));
                }
            }
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "smoke run failed:\n{}",
        problems.join("\n")
    );
    eprintln!("bench: smoke run passed (every system delivered; nothing lost or duplicated)");
    Ok(())
}

/// Every object in `v` that reports deliveries (steps, runs, half-rate runs).
fn collect_outcomes<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("lost") {
                out.push(v);
            }
            for child in map.values() {
                collect_outcomes(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_outcomes(i, out)),
        _ => {}
    }
}

fn full_plan(args: &RunArgs) -> Plan {
    Plan {
        users: 200,
        pairs: 50,
        first_rate: args.first_rate,
        rate_factor: 1.5,
        max_steps: 14,
        step_seconds: args.step_seconds,
        group_size: 50,
        group_count: 2,
        group_first_rate: 40.0,
        sf_messages: args.sf_messages,
        idle: args.idle,
        storm_seconds: 5.0,
        storm_concurrency: 32,
    }
}

fn setup() -> anyhow::Result<()> {
    xmpp::setup()?;
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--bin", "kontor"])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(
        status.success(),
        "cargo build --release --bin kontor failed"
    );
    Ok(())
}

/// Runs a command, keeping its output in `out/name.txt` and echoing it.
fn record(out: &std::path::Path, name: &str, argv: &[&str]) -> anyhow::Result<()> {
    eprintln!("bench: {}", argv.join(" "));
    let output = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(out.join(format!("{name}.txt")), &text)?;
    println!("{text}");
    anyhow::ensure!(output.status.success(), "{} failed", argv.join(" "));
    Ok(())
}

fn crypto(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    record(out, "crypto", &["python3", "scripts/bench_crypto.py"])?;
    record(
        out,
        "provisioning",
        &["cargo", "bench", "-p", "kontor-provisioning"],
    )?;
    record(
        out,
        "openssl-ecdsap256",
        &["openssl", "speed", "-seconds", "3", "ecdsap256"],
    )
}

fn run(args: &RunArgs, plan: Plan) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.kontor.exists() || !args.systems.iter().any(|s| is_kontor(*s)),
        "{} does not exist: run `bench setup` (or pass --kontor)",
        args.kontor.display()
    );
    let cores = procfs::cores();
    let pinned = cores >= 2;
    if pinned {
        procfs::pin_self(GENERATOR_CPU)?;
    } else {
        eprintln!("bench: one core only, server and generator are not pinned");
    }
    std::fs::create_dir_all(&args.out)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut interrupts = {
        let _runtime = runtime.enter();
        Interrupts::new()?
    };
    let started = Instant::now();
    let mut results = json!({
        "machine": machine(cores),
        "date": date(),
        "runs": args.runs,
        "pinned": pinned,
        "kontor_serve_args": args.kontor_serve_arg,
        "systems": {},
    });
    for &system in &args.systems {
        let name = system_name(system);
        eprintln!("bench: {name}");
        let value = runtime
            .block_on(run_system(system, args, plan, pinned, &mut interrupts))
            .with_context(|| format!("benchmarking {name}"))?;
        results["systems"][name] = value;
        // Written after every system so a failure late keeps what ran.
        std::fs::write(
            args.out.join("results.json"),
            serde_json::to_vec_pretty(&results)?,
        )?;
    }
    results["seconds"] = json!(started.elapsed().as_secs_f64());
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    write_report(&results, &args.out)?;
    eprintln!(
        "bench: done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        args.out.join("results.json").display()
    );
    Ok(())
}

fn is_kontor(s: System) -> bool {
    matches!(
        s,
        System::KontorSqlite | System::KontorPostgres | System::Kontor2nodes
    )
}

fn system_name(s: System) -> &'static str {
    match s {
        System::KontorSqlite => "kontor-sqlite",
        System::KontorPostgres => "kontor-postgres",
        System::Kontor2nodes => "kontor-2nodes",
        System::Prosody => "prosody",
        System::Ejabberd => "ejabberd",
    }
}

/// Starts a fresh instance of `system` with `users` users and `payload`.
enum Started {
    Kontor(std::sync::Arc<KontorPeer>),
    Xmpp(std::sync::Arc<xmpp::XmppPeer>),
}

async fn start(
    system: System,
    args: &RunArgs,
    dir: &std::path::Path,
    users: usize,
    payload: usize,
    pinned: bool,
    nodes: usize,
) -> anyhow::Result<Started> {
    let cpu = pinned.then_some(SERVER_CPU);
    let kontor = |store: Store, nodes: usize, cpu_share: Option<f64>| KontorOptions {
        bin: args.kontor.clone(),
        dir: dir.to_owned(),
        store,
        nodes,
        users,
        payload,
        cpu,
        cpu_share,
        serve_args: args.kontor_serve_arg.clone(),
    };
    let pg = || Store::Postgres {
        url: args.postgres.clone(),
        nats: args.nats.clone(),
    };
    Ok(match system {
        System::KontorSqlite => Started::Kontor(std::sync::Arc::new(
            KontorPeer::start(kontor(Store::Sqlite, 1, None)).await?,
        )),
        System::KontorPostgres => Started::Kontor(std::sync::Arc::new(
            KontorPeer::start(kontor(pg(), 1, None)).await?,
        )),
        System::Kontor2nodes => Started::Kontor(std::sync::Arc::new(
            KontorPeer::start(kontor(pg(), nodes, Some(0.5))).await?,
        )),
        System::Prosody | System::Ejabberd => {
            let kind = if system == System::Prosody {
                xmpp::XmppKind::Prosody
            } else {
                xmpp::XmppKind::Ejabberd
            };
            Started::Xmpp(std::sync::Arc::new(
                xmpp::XmppPeer::start(xmpp::XmppOptions {
                    kind,
                    users,
                    payload,
                    cpu,
                    dir: dir.to_owned(),
                })
                .await?,
            ))
        }
    })
}

async fn stop(started: Started) -> anyhow::Result<()> {
    match started {
        Started::Kontor(p) => sole(p, "a Kontor peer").await?.stop().await,
        Started::Xmpp(p) => sole(p, "an XMPP peer").await?.stop().await,
    }
}

/// The peer, once nothing else holds it. After an interrupted workload its
/// aborted tasks still hold clones until the runtime gets to drop them, so
/// this waits for that (briefly: an abort takes effect at the task's next
/// poll).
async fn sole<T>(mut peer: std::sync::Arc<T>, what: &str) -> anyhow::Result<T> {
    for _ in 0..500 {
        match std::sync::Arc::try_unwrap(peer) {
            Ok(p) => return Ok(p),
            Err(shared) => peer = shared,
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("{what} is still in use after 5 s")
}

async fn run_system(
    system: System,
    args: &RunArgs,
    plan: Plan,
    pinned: bool,
    interrupts: &mut Interrupts,
) -> anyhow::Result<Value> {
    let mut out = json!({});
    let node_counts: &[usize] = if system == System::Kontor2nodes {
        &[1, 2]
    } else {
        &[1]
    };
    for &nodes in node_counts {
        let key = |w: &str| {
            if system == System::Kontor2nodes {
                format!("{w}@{nodes}node")
            } else {
                w.to_owned()
            }
        };
        for &workload in &args.workloads {
            // The scale-out figure is about throughput: 1:1 only.
            if system == System::Kontor2nodes && workload != Workload::OneToOne {
                continue;
            }
            let sizes: Vec<usize> = match workload {
                Workload::OneToOne => args.sizes.clone(),
                _ => vec![256],
            };
            for size in sizes {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("kbench-{}-", system_name(system)))
                    .tempdir()?;
                let users = plan.users.max(plan.group_size * plan.group_count);
                eprintln!("bench:   {workload:?} {size} B (nodes {nodes})");
                let started = tokio::select! {
                    s = start(system, args, dir.path(), users, size, pinned, nodes) => {
                        s.context("starting the system")?
                    }
                    // Dropping the start kills what it spawned (kill on drop).
                    signal = interrupts.next() => {
                        anyhow::bail!("interrupted ({signal}) while starting {}", system_name(system))
                    }
                };
                let work = async {
                    match &started {
                        Started::Kontor(p) => workload_on(p, workload, plan, args).await,
                        Started::Xmpp(p) => workload_on(p, workload, plan, args).await,
                    }
                };
                // Ctrl-C or SIGTERM ends the workload, not the process: the
                // servers still stop and a PostgreSQL deployment's schemas
                // are still dropped. One that comes during a stop is kept
                // for the next start, which then ends at once.
                let result = tokio::select! {
                    r = work => r,
                    signal = interrupts.next() => Err(anyhow::anyhow!("interrupted ({signal})")),
                };
                let stopped = stop(started).await;
                if let (Err(_), Err(e)) = (&result, &stopped) {
                    // The workload's error is the one returned; this one
                    // would be lost.
                    eprintln!("bench: stopping {} failed too: {e:#}", system_name(system));
                }
                let value = result.with_context(|| format!("{workload:?} at {size} B"))?;
                stopped?;
                let k = key(workload_name(workload));
                if workload == Workload::OneToOne {
                    out[k][size.to_string()] = value;
                } else {
                    out[k] = value;
                }
                // Keep the logs of the last instance beside the results.
                let logs = args.out.join("logs").join(system_name(system));
                std::fs::create_dir_all(&logs)?;
                for entry in std::fs::read_dir(dir.path())?.flatten() {
                    if entry.path().extension().is_some_and(|e| e == "log") {
                        let _ = std::fs::copy(entry.path(), logs.join(entry.file_name()));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// SIGINT and SIGTERM, caught so that an interrupted run still stops the
/// servers it started (their processes would outlive it otherwise, and a
/// PostgreSQL deployment would keep its schemas).
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::OneToOne => "one_to_one",
        Workload::Groups => "groups",
        Workload::StoreForward => "store_forward",
        Workload::Idle => "idle",
        Workload::Storm => "storm",
    }
}

async fn workload_on<P: Peer + Clone>(
    peer: &P,
    workload: Workload,
    plan: Plan,
    args: &RunArgs,
) -> anyhow::Result<Value> {
    let runs = args.runs.max(1);
    match workload {
        Workload::OneToOne => {
            // Warm-up: one short step, not recorded.
            let _ = load::one_to_one(
                peer,
                plan.pairs,
                plan.first_rate,
                plan.step_seconds.min(2.0),
            )
            .await?;
            let mut all_runs = Vec::new();
            let (mut maxes, mut p99_half) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let steps = load::step_rate(
                    plan.first_rate,
                    plan.rate_factor,
                    P99_LIMIT_MS,
                    plan.max_steps,
                    |rate| load::one_to_one(peer, plan.pairs, rate, plan.step_seconds),
                )
                .await?;
                let max = load::max_rate(&steps, P99_LIMIT_MS);
                let half = match max {
                    Some(m) => {
                        Some(load::one_to_one(peer, plan.pairs, m / 2.0, plan.step_seconds).await?)
                    }
                    None => None,
                };
                if let Some(m) = max {
                    maxes.push(m);
                }
                if let Some(h) = &half {
                    p99_half.push(h.p99_ms);
                }
                all_runs.push(json!({ "steps": steps, "max_rate": max, "half_rate": half }));
            }
            Ok(json!({
                "runs": all_runs,
                "max_rate": median(&mut maxes),
                "p99_ms_at_half": median(&mut p99_half),
                "limit": limit_of(&all_runs),
            }))
        }
        Workload::Groups => {
            let groups = load::make_groups(peer, plan.group_count, plan.group_size).await?;
            let fanout = (plan.group_size - 1) as f64;
            let _ = load::groups(
                peer,
                &groups,
                plan.group_first_rate,
                plan.step_seconds.min(2.0),
            )
            .await?;
            let mut all_runs = Vec::new();
            let mut maxes = Vec::new();
            for _ in 0..runs {
                let steps = load::step_rate(
                    plan.group_first_rate,
                    plan.rate_factor,
                    P99_LIMIT_MS,
                    plan.max_steps,
                    |rate| load::groups(peer, &groups, rate, plan.step_seconds),
                )
                .await?;
                if let Some(m) = load::max_rate(&steps, P99_LIMIT_MS) {
                    maxes.push(m);
                }
                all_runs.push(json!({ "steps": steps }));
            }
            Ok(json!({
                "mode": peer.group_mode(),
                "group_size": plan.group_size,
                "groups": plan.group_count,
                "runs": all_runs,
                "max_deliveries_per_s": median(&mut maxes),
                "max_messages_per_s": median(&mut maxes.iter().map(|m| m / fanout).collect::<Vec<_>>()),
                "limit": limit_of(&all_runs),
            }))
        }
        Workload::StoreForward => {
            let mut all_runs = Vec::new();
            let (mut ingest, mut drain) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let r = load::store_and_forward(peer, plan.pairs, plan.sf_messages).await?;
                if r.invalid.is_none() {
                    ingest.push(r.ingest_per_s);
                    drain.push(r.drain_per_s);
                }
                all_runs.push(serde_json::to_value(r)?);
            }
            Ok(json!({
                "messages": plan.sf_messages,
                "runs": all_runs,
                "ingest_per_s": median(&mut ingest),
                "drain_per_s": median(&mut drain),
            }))
        }
        Workload::Idle => {
            // One reading at the full count: the memory is the server's, and
            // opening 19,000 sessions three times says little more.
            let r = load::idle(peer, plan.idle).await?;
            Ok(serde_json::to_value(r)?)
        }
        Workload::Storm => {
            let mut all_runs = Vec::new();
            let mut rates = Vec::new();
            for _ in 0..runs {
                let r = load::storm(peer, plan.storm_concurrency, plan.storm_seconds).await?;
                anyhow::ensure!(
                    r.sessions > 0,
                    "no session completed: {}",
                    r.first_failure.clone().unwrap_or_default()
                );
                rates.push(r.per_s);
                all_runs.push(serde_json::to_value(r)?);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(json!({ "runs": all_runs, "per_s": median(&mut rates) }))
        }
    }
}

/// What ended the stepping of the last run: the latency limit, the
/// generator, loss, or the step count.
fn limit_of(runs: &[Value]) -> String {
    // The step at the highest offered rate: the last one when stepping
    // up, the first when the first step failed and the rate stepped down.
    let Some(last) = runs
        .last()
        .and_then(|r| r["steps"].as_array())
        .and_then(|s| {
            s.iter().max_by(|a, b| {
                let rate = |v: &Value| v["offered_per_s"].as_f64().unwrap_or(0.0);
                rate(a).total_cmp(&rate(b))
            })
        })
    else {
        return "no steps".into();
    };
    let o: Outcome = serde_json::from_value(last.clone()).unwrap_or_default();
    if let Some(why) = o.invalid {
        why
    } else if o.p99_ms > P99_LIMIT_MS {
        format!("p99 {:.1} ms passed {P99_LIMIT_MS} ms", o.p99_ms)
    } else if o.delivered_per_s < 0.9 * o.offered_per_s * (o.expected as f64 / o.sent.max(1) as f64)
    {
        "deliveries fell behind the offered rate".into()
    } else {
        "the last step was reached".into()
    }
}

fn machine(cores: usize) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let out = |argv: &[&str]| {
        std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "not installed".into())
    };
    json!({
        "cpu": cpu,
        "cores": cores,
        "memory": mem,
        "load_at_start": load.trim(),
        "kernel": out(&["uname", "-r"]),
        "prosody": out(&["dpkg-query", "-W", "-f=${Version}", "prosody"]),
        "ejabberd": out(&["dpkg-query", "-W", "-f=${Version}", "ejabberd"]),
        "postgresql": out(&["psql", "--version"]),
        "nats": out(&["nats-server", "--version"]),
        "fd_limit": out(&["sh", "-c", "ulimit -n"]),
    })
}

fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A system's 1:1 results (the one-node figures of the scale-out system).
fn one_to_one_of(system: &Value) -> &Value {
    if system["one_to_one"].is_object() {
        &system["one_to_one"]
    } else {
        &system["one_to_one@1node"]
    }
}

/// Tables and charts from a results value, into `dir`.
fn write_report(results: &Value, dir: &std::path::Path) -> anyhow::Result<()> {
    let systems = results["systems"].as_object().cloned().unwrap_or_default();
    let names: Vec<String> = systems.keys().cloned().collect();
    let mut md = String::new();
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), short);

    // 1:1 maximum rates and latency at half, per size.
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    let sizes = ["256", "4096", "65536"];
    for name in &names {
        let s = &systems[name];
        let one = one_to_one_of(s);
        let mut points = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let cell = &one[*size];
            if cell.is_null() {
                continue;
            }
            rows.push(vec![
                name.clone(),
                format!("{size} B"),
                f(&cell["max_rate"]),
                cell["p99_ms_at_half"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.2}")),
                cell["limit"].as_str().unwrap_or("").to_owned(),
            ]);
            if let Some(v) = cell["max_rate"].as_f64() {
                points.push((i as f64, v));
            }
        }
        bars.push(Series {
            name: name.clone(),
            points,
        });
    }
    md.push_str("## 1:1, recipients online\n\n");
    md.push_str(&report::table(
        &[
            "system",
            "payload",
            "max delivered/s (p99 <= 50 ms)",
            "p99 ms at half that rate",
            "what ended the stepping",
        ],
        &rows,
    ));
    std::fs::write(
        dir.join("one_to_one_max.svg"),
        report::bar_chart(
            "1:1 maximum delivered messages per second (p99 <= 50 ms)",
            &sizes.iter().map(|s| format!("{s} B")).collect::<Vec<_>>(),
            "messages/s",
            &bars,
        ),
    )?;

    // Latency against delivered rate at 256 B, the first run's steps.
    let mut lines = Vec::new();
    for name in &names {
        let s = &systems[name];
        let one = one_to_one_of(s);
        let steps = one["256"]["runs"][0]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let points: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|st| {
                Some((
                    st["delivered_per_s"].as_f64()?,
                    st["p99_ms"].as_f64()?.min(100.0),
                ))
            })
            .collect();
        if !points.is_empty() {
            lines.push(Series {
                name: name.clone(),
                points,
            });
        }
    }
    std::fs::write(
        dir.join("one_to_one_latency.svg"),
        report::line_chart(
            "1:1 at 256 B: p99 latency against delivered rate (capped at 100 ms)",
            "delivered messages/s",
            "p99 ms",
            &lines,
        ),
    )?;

    // Groups, store and forward, idle, storm.
    let mut rows = Vec::new();
    for name in &names {
        let s = &systems[name];
        if s["groups"].is_null()
            && s["store_forward"].is_null()
            && s["idle"].is_null()
            && s["storm"].is_null()
        {
            continue;
        }
        rows.push(vec![
            name.clone(),
            f(&s["groups"]["max_deliveries_per_s"]),
            f(&s["store_forward"]["ingest_per_s"]),
            f(&s["store_forward"]["drain_per_s"]),
            s["idle"]["bytes_per_connection"]
                .as_f64()
                .map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0)),
            f(&s["idle"]["connections"]),
            f(&s["storm"]["per_s"]),
        ]);
    }
    md.push_str("\n## Groups of 50, store and forward, idle connections, connection storm\n\n");
    md.push_str(&report::table(
        &[
            "system",
            "group deliveries/s",
            "S&F ingest/s",
            "S&F drain/s",
            "memory per idle connection",
            "idle connections",
            "new sessions/s",
        ],
        &rows,
    ));

    // Scale-out.
    if let Some(s) = systems.get("kontor-2nodes") {
        let one = s["one_to_one@1node"]["256"]["max_rate"].as_f64();
        let two = s["one_to_one@2node"]["256"]["max_rate"].as_f64();
        md.push_str("\n## Scale-out (PostgreSQL + NATS, each node limited to half a core)\n\n");
        let ratio = match (one, two) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => "-".into(),
        };
        md.push_str(&report::table(
            &["one node", "two nodes", "ratio"],
            &[vec![
                one.map_or("-".into(), short),
                two.map_or("-".into(), short),
                ratio,
            ]],
        ));
    }
    md.push_str(&format!("\nMachine: {}\n", results["machine"]));
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{positive_rate, sole};

    #[test]
    fn a_first_rate_is_a_finite_number_above_zero() {
        assert_eq!(positive_rate("3375"), Ok(3375.0));
        assert_eq!(positive_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN"] {
            let e = positive_rate(bad).unwrap_err();
            assert!(e.contains("not a rate above zero"), "{bad}: {e}");
        }
        let e = positive_rate("fast").unwrap_err();
        assert!(e.contains("fast is not a number"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_peer_held_by_an_aborted_workload_is_released_for_its_stop() {
        let peer = Arc::new(7u32);
        let mut work = tokio::task::JoinSet::new();
        let held = peer.clone();
        work.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        // Let the task start and take its clone.
        tokio::task::yield_now().await;
        assert_eq!(Arc::strong_count(&peer), 2);
        drop(work);
        assert_eq!(sole(peer, "the peer").await.unwrap(), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_peer_still_held_is_an_error_naming_it() {
        let peer = Arc::new(7u32);
        let _kept = peer.clone();
        let err = sole(peer, "a Kontor peer").await.unwrap_err();
        assert_eq!(format!("{err}"), "a Kontor peer is still in use after 5 s");
    }
}
