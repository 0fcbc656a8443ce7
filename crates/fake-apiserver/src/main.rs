//! `botyard-fake-apiserver`: the FAKE Kubernetes API server as a process,
//! for benchmarks and for trying the daemon's Kubernetes backend by hand.
//! Not a cluster; see the library's documentation for what it fakes.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    about = "A FAKE Kubernetes API server (pods, Jobs, claims; a kubelet that runs containers in bubblewrap). Not a cluster."
)]
struct Args {
    /// Port on 127.0.0.1 [default: any free one].
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Added to every call.
    #[arg(long, default_value = "0s")]
    latency: String,
    /// An image its kubelet can pull: REF (the host's system) or REF=DIR
    /// (DIR's entries at / over it). Repeat.
    #[arg(long = "image", value_name = "REF[=DIR]")]
    images: Vec<String>,
    /// A ReadWriteMany claim and the host directory that holds it. Repeat.
    #[arg(long = "shared-claim", value_name = "NAME=DIR")]
    shared: Vec<String>,
    /// Where emptyDirs are made.
    #[arg(long, value_name = "DIR")]
    work: PathBuf,
    /// Write a kubeconfig for it here (namespace botyard).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut o = fake_apiserver::Options {
        latency: humantime::parse_duration(&a.latency).context("--latency")?,
        work: a.work,
        ..Default::default()
    };
    for i in a.images {
        match i.split_once('=') {
            Some((r, d)) => o.images.insert(r.into(), Some(d.into())),
            None => o.images.insert(i, None),
        };
    }
    for s in a.shared {
        let (n, d) = s.split_once('=').context("--shared-claim takes NAME=DIR")?;
        o.shared_claims.insert(n.into(), d.into());
    }
    let fake = fake_apiserver::FakeApi::start(o, a.port)?;
    if let Some(k) = a.kubeconfig {
        std::fs::write(&k, fake.kubeconfig("botyard"))?;
    }
    println!("{}", fake.url());
    // Serve until killed.
    loop {
        std::thread::park();
    }
}
