//! `kontor demo`: shows, step by step, what this build of Kontor does.
//!
//! Today that is the end-to-end cryptography of protocol v1, run on this
//! machine with freshly generated keys: devices, a 1:1 and a group message,
//! what the relay stores, tamper detection, the PIN-protected store key and
//! safety numbers. As the relay and agent land, the demo grows into the
//! full server-and-agents walk-through.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use kontor_crypto::{
    DeviceId, IdentitySecret, MessageId, Recipient, RecordCipher, Sender, fingerprint, open,
    safety_number, seal, store,
};

/// Options of `kontor demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo PIN for the local store key file.
    #[arg(long, default_value = "482913")]
    pin: String,
}

struct Device {
    user: &'static str,
    id: DeviceId,
    key: IdentitySecret,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut rng = kontor_crypto::os_rng();
    let mut step = 0;
    let mut say = |text: String| {
        step += 1;
        println!("\n[{step}] {text}");
    };

    say(
        "Three employees enroll one device each: every device makes an X25519 identity key.".into(),
    );
    let devices: Vec<Device> = ["anna@example.org", "ben@example.org", "clara@example.org"]
        .into_iter()
        .map(|user| Device {
            user,
            id: DeviceId::random(&mut rng),
            key: IdentitySecret::generate(&mut rng),
        })
        .collect();
    for d in &devices {
        println!(
            "    {:<20} device {}  identity key {}",
            d.user,
            d.id,
            d.key.public().to_hex()
        );
    }
    let [anna, ben, clara] = &devices[..] else {
        unreachable!("three devices were just made")
    };
    let recipient = |d: &Device| Recipient {
        device_id: d.id,
        identity: d.key.public(),
    };

    say("Anna sends Ben a 1:1 message, sealed on her device.".into());
    let text = "Treffen um 10 Uhr im Raum 2.14";
    let message_id = MessageId::random(&mut rng);
    let envelope = seal(
        &mut rng,
        message_id,
        Sender {
            device_id: anna.id,
            identity: &anna.key,
        },
        &[recipient(ben)],
        text.as_bytes(),
    )?;
    println!(
        "    the relay stores {} body bytes once and one {}-byte header+wrap for Ben's device; it holds no key to read them",
        envelope.body().len(),
        kontor_crypto::envelope::DELIVERY_LEN
    );
    let sealed = envelope
        .sealed_for(ben.id)
        .context("Ben's device is a recipient")?;
    let opened = open(&sealed, &ben.key, Some(ben.id), &anna.key.public())?;
    println!(
        "    Ben's device opens it: {:?}",
        String::from_utf8_lossy(&opened.plaintext)
    );

    say("Anna writes to the group (Ben and Clara): one body, one wrap per device.".into());
    let group_text = "Die Präsentation ist fertig.";
    let group_message_id = MessageId::random(&mut rng);
    let group = seal(
        &mut rng,
        group_message_id,
        Sender {
            device_id: anna.id,
            identity: &anna.key,
        },
        &[recipient(ben), recipient(clara)],
        group_text.as_bytes(),
    )?;
    for d in [ben, clara] {
        let sealed = group
            .sealed_for(d.id)
            .context("group member is a recipient")?;
        let opened = open(&sealed, &d.key, Some(d.id), &anna.key.public())?;
        println!(
            "    {:<20} reads {:?}",
            d.user,
            String::from_utf8_lossy(&opened.plaintext)
        );
    }

    say("Someone on the way flips one bit, or hands Clara the message meant for Ben.".into());
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match open(&tampered, &ben.key, Some(ben.id), &anna.key.public()) {
        Err(e) => println!("    flipped bit: refused at step `{}` ({e})", e.step()),
        Ok(_) => anyhow::bail!("a tampered message opened"),
    }
    match open(&sealed, &clara.key, Some(clara.id), &anna.key.public()) {
        Err(e) => println!("    wrong device: refused at step `{}` ({e})", e.step()),
        Ok(_) => anyhow::bail!("a message opened on the wrong device"),
    }

    say(format!(
        "Ben's phone keeps its store key in a key file wrapped by scrypt(PIN), N = 2^{}.",
        store::DEFAULT_LOG2_N
    ));
    let started = Instant::now();
    let (store_key, key_file) = kontor_crypto::create_key_file(&mut rng, &args.pin)?;
    println!(
        "    key file: {} bytes, created in {:.2?}",
        key_file.len(),
        started.elapsed()
    );
    let records = RecordCipher::new(&store_key);
    let record = records.seal(&mut rng, "messages", &1i64.to_be_bytes(), text.as_bytes());
    println!(
        "    message row 1 stored encrypted: {} bytes, bound to table and row",
        record.len()
    );
    match kontor_crypto::open_key_file(&key_file, "000000") {
        Err(e) => println!("    wrong PIN: {e}"),
        Ok(_) => anyhow::bail!("a wrong PIN opened the key file"),
    }
    let started = Instant::now();
    let unlocked = kontor_crypto::open_key_file(&key_file, &args.pin)?;
    let row = RecordCipher::new(&unlocked).open("messages", &1i64.to_be_bytes(), &record)?;
    println!(
        "    right PIN: unlocked in {:.2?}, row 1 reads {:?}",
        started.elapsed(),
        String::from_utf8_lossy(&row)
    );

    say("Anna and Ben compare safety numbers to be sure no one swapped their keys.".into());
    let anna_pub = anna.key.public();
    let ben_pub = ben.key.public();
    let number = safety_number(
        fingerprint::Party {
            id: anna.user,
            identity: &anna_pub,
        },
        fingerprint::Party {
            id: ben.user,
            identity: &ben_pub,
        },
    );
    println!("    {number}");

    println!("\nDone: every step above ran on this machine with fresh keys.");
    Ok(ExitCode::SUCCESS)
}
