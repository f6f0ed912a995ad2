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
