//! Crash safety and concurrency: imports and gc killed with SIGKILL at
//! random instants leave a store that fsck passes, with every ref showing
//! its old or its new value; imports and gc running at once corrupt nothing.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    /// Seeded from the clock; the seed is printed to replay a failure.
    fn seeded(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("{what} seed {seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Rewrites part of the source so each round has content the store lacks.
fn mutate(src: &Path, round: u64) {
    for i in 0..300 {
        let d = src.join(format!("d{}", i % 17));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("r{i}")),
            format!("round {round} file {i} ").repeat(20 + i as usize),
        )
        .unwrap();
    }
    for i in 0..2 {
        std::fs::write(
            src.join(format!("big{i}")),
            vec![(round * 3 + i) as u8; (2 << 20) + 17],
        )
        .unwrap();
    }
}

fn base(src: &Path) {
    for i in 0..1500 {
        let d = src.join(format!("base/{}", i % 40));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("stable {i}").repeat(40)).unwrap();
    }
}

fn tree_or_none(env: &Env, name: &str) -> Option<store::Hash> {
    env.store()
        .try_image(&name.parse().unwrap())
        .unwrap()
        .map(|r| r.tree)
}

/// Kills runs of one kind of command at random instants. A run goes whole
/// until one has finished (unless how long a run takes is known), to learn
/// the span a run takes (the shortest seen); later runs die anywhere in it,
/// up to `over` per cent of it.
struct Killer {
    took: Option<Duration>,
    over: u64,
    killed: usize,
    finished: usize,
}

impl Killer {
    fn new(over: u64) -> Killer {
        Killer {
            took: None,
            over,
            killed: 0,
            finished: 0,
        }
    }

    fn knowing(took: Duration, over: u64) -> Killer {
        Killer {
            took: Some(took),
            ..Killer::new(over)
        }
    }

    /// Runs botyard with `args`, killed at a random instant.
    fn run(&mut self, env: &Env, rng: &mut Rng, args: &[String]) {
        let delay = match self.took {
            None => Duration::from_secs(120),
            Some(t) => Duration::from_micros(rng.below(t.as_micros() as u64 * self.over / 100)),
        };
        match run_killed(env, args, delay) {
            Some(t) => {
                self.finished += 1;
                self.took = Some(self.took.map_or(t, |k| k.min(t)));
            }
            None => self.killed += 1,
        }
    }
}

/// Runs botyard, killing it after `delay`; returns how long it took if it
/// finished first.
fn run_killed(env: &Env, args: &[String], delay: Duration) -> Option<Duration> {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "botyard {args:?} failed without being killed");
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    None
}

#[test]
fn sigkill_of_imports_and_gc_at_random_instants_leaves_a_consistent_store() {
    let mut rng = Rng::seeded("crash test");
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    mutate(&src, 0);
    let t0 = Instant::now();
    env.ok(&["image", "import", "x:1", "--dir", src.to_str().unwrap()]);
    // How long each kind of run takes, learnt from runs that finish, so the
    // kills land inside the work rather than after it.
    let mut killers: [Killer; 3] = std::array::from_fn(|_| Killer::knowing(t0.elapsed(), 100));
    let rounds = 36;
    for round in 1..=rounds {
        let old = tree_or_none(&env, "x:1");
        mutate(&src, round);
        let kind = round % 3;
        let args: Vec<String> = match kind {
            0 => {
                // Make garbage, then kill a gc sweeping it.
                env.ok(&["image", "import", "x:1", "--dir", src.to_str().unwrap()]);
                vec!["gc".into()]
            }
            1 => vec![
                "image".into(),
                "import".into(),
                "x:1".into(),
                "--dir".into(),
                src.display().to_string(),
            ],
            _ => {
                let tarball = env.path("src.tar.gz");
                sh(&format!(
                    "tar --xattrs --format=pax -C '{}' -czf '{}' .",
                    src.display(),
                    tarball.display()
                ));
                vec![
                    "image".into(),
                    "import".into(),
                    "x:1".into(),
                    "--tar".into(),
                    tarball.display().to_string(),
                ]
            }
        };
        let old = if kind == 0 {
            tree_or_none(&env, "x:1")
        } else {
            old
        };
        killers[kind as usize].run(&env, &mut rng, &args);
        env.fsck_ok();
        let now = tree_or_none(&env, "x:1");
        if now != old {
            // The new value must be the whole of what was imported.
            assert_same(
                &manifest_of_dir(&src),
                &manifest_of_tree(&env.store(), now.unwrap()),
            );
        }
    }
    let killed: usize = killers.iter().map(|k| k.killed).sum();
    let finished: usize = killers.iter().map(|k| k.finished).sum();
    eprintln!("{killed} runs killed mid-way, {finished} finished before the kill");
    assert!(
        killed >= rounds as usize / 3,
        "too few runs were actually killed ({killed}); the test proves little"
    );
    // After all that, gc cleans up and the store is still whole.
    env.ok(&["gc"]);
    env.fsck_ok();
    assert_eq!(std::fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);
}

#[test]
fn two_imports_and_a_gc_at_once_keep_every_live_object() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    base(&a);
    base(&b);
    for round in 0..4u64 {
        mutate(&a, round * 2);
        mutate(&b, round * 2 + 1);
        // Something for gc to remove while the imports run.
        env.ok(&["image", "import", "junk:1", "--dir", a.to_str().unwrap()]);
        env.ok(&["image", "rm", "junk:1"]);
        let spawn = |args: &[&str]| {
            env.cmd()
                .args(args)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut procs = [
            spawn(&["image", "import", "a:1", "--dir", a.to_str().unwrap()]),
            spawn(&["gc"]),
            spawn(&["image", "import", "b:1", "--dir", b.to_str().unwrap()]),
            spawn(&["gc"]),
        ];
        for p in procs.iter_mut() {
            assert!(p.wait().unwrap().success());
        }
        env.fsck_ok();
        assert_same(
            &manifest_of_dir(&a),
            &manifest_of_tree(&env.store(), env.tree_of("a:1")),
        );
        assert_same(
            &manifest_of_dir(&b),
            &manifest_of_tree(&env.store(), env.tree_of("b:1")),
        );
    }
}

#[test]
fn fsck_names_damage_and_gc_removes_only_garbage() {
    let env = Env::new();
    let a = env.path("a");
    base(&a);
    mutate(&a, 1);
    env.ok(&["image", "import", "a:1", "--dir", a.to_str().unwrap()]);
    mutate(&a, 2);
    env.ok(&["image", "import", "b:1", "--dir", a.to_str().unwrap()]);
    env.ok(&["image", "rm", "b:1"]);
    let dry = env.json(&["gc", "--dry-run", "--json"]);
    assert!(dry["objects"].as_u64().unwrap() >= 300, "{dry}");
    let before = env.contents();
    assert_eq!(
        env.json(&["gc", "--dry-run", "--json"])["objects"],
        dry["objects"]
    );
    assert_eq!(env.contents(), before, "--dry-run removed something");
    let done = env.json(&["gc", "--json"]);
    assert_eq!(done["objects"], dry["objects"]);
    env.fsck_ok();
    // Every object a:1 needs is still there and intact.
    manifest_of_tree(&env.store(), env.tree_of("a:1"));

    // Damage: flip a byte of one object, delete another, break a ref.
    let store = env.store();
    let m = manifest_of_tree(&store, env.tree_of("a:1"));
    let mut files = m.values().filter_map(|d| d.content.filter(|_| d.size > 0));
    let victim = files.next().unwrap();
    let gone = files.find(|h| *h != victim).unwrap();
    let p = store.object_path(&victim);
    let mut data = std::fs::read(&p).unwrap();
    data[0] ^= 0xff;
    std::fs::write(&p, data).unwrap();
    std::fs::remove_file(store.object_path(&gone)).unwrap();
    std::fs::create_dir_all(env.store.join("refs/images/broken")).unwrap();
    std::fs::write(env.store.join("refs/images/broken/1"), b"{not json").unwrap();
    let out = env.run(&["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("object {victim} is damaged")),
        "{err}"
    );
    assert!(err.contains(&format!("object {gone} is missing")), "{err}");
    assert!(err.contains("broken:1"), "{err}");
    // gc refuses to sweep while a ref is unreadable.
    let err = env.fails(&["gc"]);
    assert!(err.contains("fsck"), "{err}");
}

#[test]
fn sigkill_of_bot_commits_loses_no_byte_the_bot_wrote() {
    require_root!();
    let mut rng = Rng::seeded("commit crash test");
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "c", "--image", "base:1"]);
    let root = env.store.join("bots/c/root");
    // Round 0 runs to the end to learn how long a commit takes; later
    // rounds are killed anywhere in that span, up to just after it.
    let mut killer = Killer::new(110);
    for round in 0..16u64 {
        env.ok(&["bot", "mount", "c"]);
        mutate(&root, round);
        if round % 4 == 1 {
            std::fs::remove_dir_all(root.join(format!("base/{round}"))).unwrap();
        }
        let want = manifest_of_dir(&root);
        env.ok(&["bot", "unmount", "c"]);
        let args: Vec<String> = vec!["bot".into(), "commit".into(), "c".into()];
        killer.run(&env, &mut rng, &args);
        env.fsck_ok();
        env.ok(&["bot", "mount", "c"]);
        assert_same(&want, &manifest_of_dir(&root));
        env.ok(&["bot", "unmount", "c"]);
    }
    let Killer {
        killed, finished, ..
    } = killer;
    eprintln!("{killed} commits killed mid-way, {finished} finished");
    assert!(killed >= 5, "too few commits were killed ({killed})");
    env.ok(&["bot", "commit", "c"]);
    env.ok(&["gc"]);
    env.fsck_ok();
}

#[test]
fn sigkill_of_copy_bot_creates_on_btrfs_leaves_no_half_made_root() {
    require_root!();
    if !have_tool("mkfs.btrfs", "btrfs-progs") {
        return;
    }
    let mut rng = Rng::seeded("copy create crash test");
    let loop_dir = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(loop_dir.path(), "btrfs", "1G");
    let env = Env::with_store(lfs.mnt.join("store"));
    let src = env.path("src");
    base(&src);
    let mut killer = Killer::new(110);
    for round in 0..12u64 {
        // A new image each round, so each create builds its image root.
        mutate(&src, round);
        let image = format!("base:{round}");
        env.ok(&[
            "image",
            "import",
            "-q",
            &image,
            "--dir",
            src.to_str().unwrap(),
        ]);
        let id = format!("c{round}");
        let args: Vec<String> = ["bot", "create", &id, "--image", &image, "--driver", "copy"]
            .map(String::from)
            .to_vec();
        killer.run(&env, &mut rng, &args);
        env.fsck_ok();
        let made = env
            .cmd()
            .args(["bot", "show", &id])
            .output()
            .unwrap()
            .status
            .success();
        if !made {
            // Killed before the ref: the retry starts clean.
            env.ok(&["bot", "create", &id, "--image", &image, "--driver", "copy"]);
        }
        let show = env.json(&["bot", "show", &id, "--json"]);
        assert_eq!(show["snapshot"], true, "{show}");
        let tree = json_hash(&show, "image_tree");
        assert_dir_is_tree(&env, &env.store.join(format!("bots/{id}/root")), tree);
        // A second bot of the image snapshots the same, complete root.
        let twin = format!("t{round}");
        env.ok(&[
            "bot", "create", &twin, "--image", &image, "--driver", "copy",
        ]);
        assert_dir_is_tree(&env, &env.store.join(format!("bots/{twin}/root")), tree);
    }
    let Killer {
        killed, finished, ..
    } = killer;
    eprintln!("{killed} creates killed mid-way, {finished} finished");
    assert!(killed >= 4, "too few creates were killed ({killed})");
    env.ok(&["gc"]);
    let left: Vec<_> = std::fs::read_dir(env.store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "gc left {left:?} in tmp/");
    env.fsck_ok();
}

/// Forks, adoptions and resets to a commit killed at random instants: the
/// store passes fsck, a fork or adopted bot is whole or absent, and a
/// reset bot shows its old state or its new one.
#[test]
fn sigkill_of_forks_adoptions_and_resets_leaves_old_or_new_state() {
    require_root!();
    let mut rng = Rng::seeded("history crash test");
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "c", "--image", "base:1"]);
    let root = env.store.join("bots/c/root");
    env.ok(&["bot", "mount", "c"]);
    mutate(&root, 1);
    let first = manifest_of_dir(&root);
    env.ok(&["bot", "unmount", "c"]);
    let c1 = env.json(&["bot", "commit", "c", "--json"])[0]["commit"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["bot", "mount", "c"]);
    mutate(&root, 2);
    let second = manifest_of_dir(&root);
    env.ok(&["bot", "unmount", "c"]);
    let c2 = env.json(&["bot", "commit", "c", "--json"])[0]["commit"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    // A full copy to adopt: the second state, written out.
    let copy = env.path("copy");
    env.ok(&["bot", "mount", "c", "--at", copy.to_str().unwrap()]);
    let staged = env.path("staged");
    sh(&format!(
        "cp -a '{}' '{}'",
        copy.display(),
        staged.display()
    ));
    env.ok(&["bot", "unmount", "c"]);
    let mut killers: [Killer; 3] = std::array::from_fn(|_| Killer::new(110));
    for round in 0..24u64 {
        let verb = round % 3;
        let args: Vec<String> = match verb {
            0 => vec![
                "bot".into(),
                "fork".into(),
                format!("f{round}"),
                "--from".into(),
                format!("c@{c2}"),
                "--driver".into(),
                "copy".into(),
            ],
            1 => vec![
                "bot".into(),
                "adopt".into(),
                format!("a{round}"),
                "--from".into(),
                staged.display().to_string(),
                "--image".into(),
                "base:1".into(),
            ],
            _ => vec![
                "bot".into(),
                "reset".into(),
                "c".into(),
                "--to".into(),
                if round % 2 == 0 {
                    c1.clone()
                } else {
                    c2.clone()
                },
            ],
        };
        // The first round of each verb runs whole, to learn how long it
        // takes; later ones are killed anywhere in that span.
        killers[verb as usize].run(&env, &mut rng, &args);
        env.fsck_ok();
        match verb {
            0 | 1 => {
                let id = &args[2];
                if env.run(&["bot", "show", id]).status.success() {
                    // A copy fork is its directory; an adopted bot mounts.
                    let r = env.store.join("bots").join(id).join("root");
                    if verb == 1 {
                        env.ok(&["bot", "mount", id]);
                    }
                    assert_same(&second, &manifest_of_dir(&r));
                    if verb == 1 {
                        env.ok(&["bot", "unmount", id]);
                    }
                }
            }
            _ => {
                env.ok(&["bot", "mount", "c"]);
                let now = manifest_of_dir(&root);
                env.ok(&["bot", "unmount", "c"]);
                assert!(
                    now == first || now == second,
                    "round {round}: neither state"
                );
            }
        }
    }
    let killed: usize = killers.iter().map(|k| k.killed).sum();
    eprintln!("{killed} of 21 killed mid-way");
    assert!(killed >= 5, "too few were killed ({killed})");
    env.ok(&["gc"]);
    env.fsck_ok();
}

/// Rebases killed at random instants: the store passes fsck and the bot
/// is on its old image with its old tree, or on the new image with the
/// tree an uninterrupted rebase makes.
#[test]
fn sigkill_of_rebases_leaves_the_old_or_the_new_state() {
    require_root!();
    let mut rng = Rng::seeded("rebase crash test");
    let env = Env::new();
    let src = env.path("src");
    base(&src);
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    // The new image updates files the bot leaves alone.
    for i in 0..400 {
        let d = src.join(format!("base/{}", i % 40));
        std::fs::write(d.join(format!("f{i}")), format!("updated {i}").repeat(30)).unwrap();
    }
    env.ok(&["image", "import", "base:2", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "c", "--image", "base:1"]);
    let root = env.store.join("bots/c/root");
    env.ok(&["bot", "mount", "c"]);
    mutate(&root, 3);
    env.ok(&["bot", "unmount", "c"]);
    let pre = env.json(&["bot", "commit", "c", "--json"])[0]["commit"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let pre_tree = env.json(&["bot", "show", "c", "--json"])["tree"].clone();
    // What an uninterrupted rebase makes, on a fork.
    env.ok(&["bot", "fork", "ref", "--from", "c"]);
    env.ok(&["bot", "rebase", "ref", "--image", "base:2"]);
    let new_tree = env.json(&["bot", "show", "ref", "--json"])["tree"].clone();
    assert_ne!(new_tree, pre_tree);
    let mut killer = Killer::new(150);
    let mut news = 0;
    for round in 0..12 {
        env.ok(&["bot", "reset", "c", "--to", &pre]);
        let args: Vec<String> = ["bot", "rebase", "c", "--image", "base:2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        killer.run(&env, &mut rng, &args);
        env.fsck_ok();
        let show = env.json(&["bot", "show", "c", "--json"]);
        let old = show["image"] == "base:1" && show["tree"] == pre_tree;
        let new = show["image"] == "base:2" && show["tree"] == new_tree;
        assert!(old || new, "round {round}: {show}");
        news += new as u32;
    }
    let killed = killer.killed;
    eprintln!("{killed} of 11 rebases killed mid-way; {news} rounds ended on the new image");
    assert!(killed >= 3, "too few were killed ({killed})");
}

/// Live commits killed at random instants, while the bot is mounted: fsck
/// passes and every file of the bot still holds exactly its bytes.
#[test]
fn sigkill_of_live_commits_changes_nothing_the_bot_sees() {
    require_root!();
    let mut rng = Rng::seeded("live commit crash test");
    let loop_dir = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(loop_dir.path(), "xfs", "600M");
    let env = Env::with_store(lfs.mnt.join("store"));
    let src = env.path("src");
    base(&src);
    mutate(&src, 1);
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "c", "--image", "base:1"]);
    let root = env.store.join("bots/c/root");
    let mut killer = Killer::new(110);
    for round in 0..10u64 {
        env.ok(&["bot", "mount", "c"]);
        // Content the store holds (round 1's files) and content it lacks.
        mutate(&root, 1 + round % 2);
        let want = manifest_of_dir(&root);
        let args: Vec<String> = ["bot", "commit", "c", "--live"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        killer.run(&env, &mut rng, &args);
        assert_same(&want, &manifest_of_dir(&root));
        env.ok(&["bot", "unmount", "c"]);
        env.fsck_ok();
    }
    let killed = killer.killed;
    eprintln!("{killed} of 9 live commits killed mid-way");
    assert!(killed >= 3, "too few were killed ({killed})");
    env.ok(&["bot", "commit", "c"]);
    env.fsck_ok();
}
