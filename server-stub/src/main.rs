//! Lapterop collection server: ingest, review, donor proof.
//!
//! One binary and one data directory. `serve` runs the HTTP server (stations post signed certificates,
//! workshop leads review them, donors read their proof); the other subcommands administer the same
//! data directory from a shell: enrol and revoke station keys, add reviewers, check the log, export CSV.
//!
//! Exit codes: 0 done; 1 a check failed (`verify-log`); 2 usage error or the command could not run.

mod donor;
mod hardware;
mod ingest;
mod limits;
mod listen;
mod pdf;
mod report;
mod review;
mod store;
mod throttle;
mod transparency;
mod views;
mod web;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lapterop_certificate::{self as cert, keys, SigningKey};

/// Lapterop collection server: ingest, review, donor proof.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Data directory (database, server key); created if missing.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:8080 (put a TLS reverse proxy in front).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Public base URL of this server as donors see it, e.g. https://proof.example.org
        /// (default: http://LISTEN).
        #[arg(long)]
        public_url: Option<String>,
        /// Mark session cookies `Secure` (set this when the server is reached over HTTPS).
        #[arg(long)]
        secure_cookies: bool,
        /// Connections served at once; one more is answered 503 and closed.
        #[arg(long, default_value_t = limits::MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// Enrol, list and revoke station keys.
    Stations {
        #[command(subcommand)]
        command: StationsCommand,
    },
    /// Which OS image keys each site may install; certificates with an image signed by another key
    /// are flagged for review.
    ImageKeys {
        #[command(subcommand)]
        command: ImageKeysCommand,
    },
    /// Add reviewers (workshop leads).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Check the whole log: hash chain, stored certificates and receipt signatures. Exit 1 if broken.
    VerifyLog {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a consistent copy of the database to FILE while the server runs (SQLite VACUUM INTO).
    Backup {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The copy to write; must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print every certificate as CSV (one row per certificate) for reporting.
    ExportCsv {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StationsCommand {
    /// Enrol a station's public key.
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Station name (shown to reviewers and donors).
        #[arg(long)]
        name: String,
        /// The station's public key file (STATION.pub, from `lapterop-cert keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// List enrolled stations.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a station: its certificates are refused from now on (stored ones stay).
    Revoke {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Station name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageKeysCommand {
    /// Allow an image key for a site: the `.pub` file the lead gave `lapterop-image-builder live
    /// --image-key`.
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The site exactly as the stations' site.toml names it (`[station] site`), or `*` for every site.
        #[arg(long)]
        site: String,
        /// The image key's public half (IMAGE.pub).
        #[arg(long)]
        key: PathBuf,
        /// A name for people, e.g. "standard image 2026".
        #[arg(long, default_value = "image key")]
        name: String,
    },
    /// List the allowed image keys by site.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take an image key off a site's list (certificates that used it are flagged from then on).
    Remove {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The site (or `*`).
        #[arg(long)]
        site: String,
        /// The key id, as `list` shows it.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a reviewer, or set a new password (which ends their open sessions); the password is read
    /// from standard input.
    Add {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// Login name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lapterop-server: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            data,
            listen,
            public_url,
            secure_cookies,
            max_connections,
        } => {
            anyhow::ensure!(
                (1..=65_535).contains(&max_connections),
                "--max-connections is a number from 1 to 65535"
            );
            let public_url = public_url
                .unwrap_or_else(|| format!("http://{listen}"))
                .trim_end_matches('/')
                .to_owned();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(web::serve(web::Config {
                data,
                listen,
                public_url,
                secure_cookies,
                limits: limits::Limits {
                    max_connections,
                    ..limits::Limits::default()
                },
            }))?;
            // Requests still running after the grace period (a blocking database or hashing task)
            // must not hold the exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
        Command::Stations { command } => stations(command)?,
        Command::ImageKeys { command } => image_keys(command)?,
        Command::Users {
            command: UsersCommand::Add { data, name },
        } => {
            anyhow::ensure!(
                !name.trim().is_empty() && name.len() <= 64,
                "a login name has 1 to 64 characters"
            );
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.chars().count() >= 10,
                "the password must have at least 10 characters"
            );
            let hash = review::hash_password(password)?;
            let mut conn = store::open(&data)?;
            match store::set_user(&mut conn, &name, &hash, &cert::now_utc())? {
                store::SetUser::Added => println!("reviewer {name:?} can now log in"),
                store::SetUser::PasswordChanged { sessions_ended: 0 } => {
                    println!("reviewer {name:?} has a new password (no session was open)")
                }
                store::SetUser::PasswordChanged { sessions_ended } => println!(
                    "reviewer {name:?} has a new password; {sessions_ended} open session(s) ended (logged out)"
                ),
            }
        }
        Command::VerifyLog { data } => {
            let conn = store::open(&data)?;
            let key = server_key(&data)?.verifying_key();
            match ingest::verify_log(&conn, &key) {
                Ok(n) => println!("log intact: {n} entries, every receipt signed by the server key"),
                Err(e) => {
                    println!("LOG BROKEN: {e:#}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Backup { data, out } => {
            anyhow::ensure!(!out.exists(), "{} exists already; choose a new file", out.display());
            let conn = store::open(&data)?;
            let target = out.to_str().context("the backup path must be UTF-8")?;
            // The copy holds donor links: readable by its owner only. SQLite writes VACUUM INTO into an
            // empty file that exists, keeping its mode.
            {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&out)
                    .with_context(|| format!("creating the backup {}", out.display()))?;
            }
            conn.execute("VACUUM INTO ?1", [target])
                .with_context(|| format!("writing the backup {}", out.display()))?;
            println!(
                "backup written to {}; keep server.key from {} safe as well",
                out.display(),
                data.display()
            );
        }
        Command::ExportCsv { data } => {
            let conn = store::open(&data)?;
            let rows = store::certs(&conn, &store::Filter::default(), u64::MAX >> 12)?;
            print!("{}", report::csv(&rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stations(command: StationsCommand) -> anyhow::Result<()> {
    match command {
        StationsCommand::Add { data, name, key } => {
            anyhow::ensure!(
                !name.trim().is_empty() && name.len() <= 128,
                "a station name has 1 to 128 characters"
            );
            let public = keys::read_public_key(&key)?;
            let key_id = keys::key_id(&public);
            let conn = store::open(&data)?;
            store::add_station(&conn, &name, &key_id, &hex::encode(public.as_bytes()), &cert::now_utc())?;
            println!("station {name:?} enrolled, key id {key_id}");
        }
        StationsCommand::List { data, json } => {
            let conn = store::open(&data)?;
            let list = store::stations(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in list {
                    let state = match &s.revoked_at {
                        Some(t) => format!("REVOKED {t}"),
                        None => "active".to_owned(),
                    };
                    println!("{}\t{}\tenrolled {}\t{}", s.name, s.key_id, s.enrolled_at, state);
                }
            }
        }
        StationsCommand::Revoke { data, name } => {
            let conn = store::open(&data)?;
            anyhow::ensure!(
                store::revoke_station(&conn, &name, &cert::now_utc())?,
                "no station named {name:?} (see: lapterop-server stations list)"
            );
            println!("station {name:?} revoked; its new certificates are refused");
        }
    }
    Ok(())
}

fn image_keys(command: ImageKeysCommand) -> anyhow::Result<()> {
    match command {
        ImageKeysCommand::Add { data, site, key, name } => {
            anyhow::ensure!(
                !site.trim().is_empty() && site.len() <= 256,
                "--site has 1 to 256 characters: the site as the stations' site.toml names it, or *"
            );
            let public = keys::read_public_key(&key)?;
            let key_id = keys::key_id(&public);
            let conn = store::open(&data)?;
            store::allow_image_key(
                &conn,
                &store::ImageKey {
                    site: site.clone(),
                    key_id: key_id.clone(),
                    public_key: hex::encode(public.as_bytes()),
                    name,
                    added_at: cert::now_utc(),
                },
            )?;
            let which = if site == "*" {
                "every site".to_owned()
            } else {
                format!("site {site:?}")
            };
            println!("image key {key_id} allowed for {which}");
        }
        ImageKeysCommand::List { data, json } => {
            let conn = store::open(&data)?;
            let list = store::image_keys(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!(
                    "no image key is allowed yet: every installed image is flagged (lapterop-server image-keys add)"
                );
            } else {
                for k in list {
                    println!("{}\t{}\t{}\tadded {}", k.site, k.key_id, k.name, k.added_at);
                }
            }
        }
        ImageKeysCommand::Remove { data, site, key_id } => {
            let conn = store::open(&data)?;
            anyhow::ensure!(
                store::remove_image_key(&conn, &site, &key_id)?,
                "image key {key_id} is not allowed for {site:?} (see: lapterop-server image-keys list)"
            );
            println!("image key {key_id} is no longer allowed for {site:?}");
        }
    }
    Ok(())
}

/// Reads the server key from `DIR/server.key`, creating the pair on first use.
pub fn server_key(dir: &Path) -> anyhow::Result<SigningKey> {
    let prefix = dir.join("server");
    let key_path = dir.join("server.key");
    if !key_path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        let key = keys::generate()?;
        keys::write_keypair(&prefix, &key)?;
        return Ok(key);
    }
    Ok(keys::read_signing_key(&key_path)?)
}

/// 160 random bits from the operating system, as 40 hex digits: donor links, sessions, CSRF tokens.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    Ok(hex::encode(bytes))
}
