//! Both engines against the same contract.

use super::*;

fn entries(range: std::ops::Range<u64>) -> Vec<RawEntry> {
    range
        .map(|i| (i, format!("entry-{i}").into_bytes()))
        .collect()
}

fn each_engine(f: impl Fn(Engine, &Path)) {
    for engine in [Engine::Sled, Engine::Redb] {
        let dir = tempfile::tempdir().expect("tempdir");
        f(engine, dir.path());
    }
}

#[test]
fn append_read_last() {
    each_engine(|engine, dir| {
        let e = open_engine(engine, dir).expect("open");
        assert_eq!(e.last_entry().expect("last"), None);
        e.append(&entries(1..11)).expect("append");
        let got = e.read_range(3, 6).expect("range");
        assert_eq!(got, entries(3..6), "{engine:?}");
        assert_eq!(e.read_range(6, 3).expect("empty range"), vec![]);
        assert_eq!(e.last_entry().expect("last").map(|x| x.0), Some(10));
    });
}

#[test]
fn truncate_and_purge_leave_no_hole() {
    each_engine(|engine, dir| {
        let e = open_engine(engine, dir).expect("open");
        e.append(&entries(1..21)).expect("append");
        e.truncate_from(15).expect("truncate");
        assert_eq!(e.last_entry().expect("last").map(|x| x.0), Some(14));
        e.purge_upto(5, b"p5").expect("purge");
        assert_eq!(
            e.read_range(0, 100).expect("all"),
            entries(6..15),
            "{engine:?}"
        );
        assert_eq!(
            e.get_meta(MetaKey::LastPurged).expect("meta"),
            Some(b"p5".to_vec())
        );
    });
}

#[test]
fn everything_survives_reopen() {
    each_engine(|engine, dir| {
        {
            let e = open_engine(engine, dir).expect("open");
            e.append(&entries(1..6)).expect("append");
            e.put_meta(&[(MetaKey::Vote, b"v"), (MetaKey::Committed, b"c")], false)
                .expect("meta");
            e.put_meta(&[(MetaKey::SnapshotData, b"snap")], true)
                .expect("meta");
            e.close().expect("close");
            assert!(matches!(e.append(&entries(6..7)), Err(EngineError::Closed)));
        }
        let e = open_engine(engine, dir).expect("reopen");
        assert_eq!(e.read_range(1, 6).expect("range"), entries(1..6));
        assert_eq!(e.get_meta(MetaKey::Vote).expect("v"), Some(b"v".to_vec()));
        assert_eq!(
            e.get_meta(MetaKey::Committed).expect("c"),
            Some(b"c".to_vec())
        );
        assert_eq!(
            e.get_meta(MetaKey::SnapshotData).expect("s"),
            Some(b"snap".to_vec())
        );
        assert_eq!(e.get_meta(MetaKey::SnapshotMeta).expect("m"), None);
    });
}

#[test]
fn refuses_the_other_engines_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    open_engine(Engine::Sled, dir.path())
        .expect("open")
        .close()
        .expect("close");
    let err = open_engine(Engine::Redb, dir.path())
        .err()
        .expect("must refuse");
    assert!(
        matches!(err, EngineError::WrongEngine { found: "sled", .. }),
        "{err}"
    );
}

/// A redb file that is empty, or has 4 KiB overwritten at an offset, is
/// refused naming the file (or, when the damage is in unused space, opens with
/// its entries): never a panic, never a new empty store.
#[test]
fn a_damaged_or_empty_redb_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("good");
    {
        let e = open_engine(Engine::Redb, &store).expect("open");
        for i in 0..50 {
            e.append(&entries(i * 20 + 1..i * 20 + 21)).expect("append");
        }
        e.close().expect("close");
    }
    let good = std::fs::read(store.join("orion.redb")).expect("file");
    let (mut refused, mut opened) = (0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..10 {
        let d = dir.path().join(format!("bad-{i}"));
        std::fs::create_dir_all(&d).expect("dir");
        let mut bytes = good.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed as usize) % bytes.len().saturating_sub(4096).max(1);
        for b in &mut bytes[at..(at + 4096).min(good.len())] {
            *b = 0xa5;
        }
        std::fs::write(d.join("orion.redb"), &bytes).expect("write");
        match open_engine(Engine::Redb, &d) {
            Err(EngineError::Damaged { file, why }) => {
                assert_eq!(file, d.join("orion.redb"));
                assert!(!why.is_empty());
                refused += 1;
            }
            Err(other) => panic!("at offset {at}: {other}"),
            Ok(e) => {
                // The damage missed what it holds: every entry still reads.
                assert_eq!(
                    e.read_range(1, 1001).expect("read").len(),
                    1000,
                    "offset {at}"
                );
                opened += 1;
            }
        }
    }
    eprintln!("4 KiB overwritten at 10 offsets: {refused} refused, {opened} opened intact");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    std::fs::write(empty.join("orion.redb"), b"").expect("write");
    let e = open_engine(Engine::Redb, &empty)
        .err()
        .expect("an empty file is refused");
    let text = e.to_string();
    assert!(
        text.contains("orion.redb is damaged (the file is empty)") && text.contains("rejoin"),
        "{text}"
    );
}
