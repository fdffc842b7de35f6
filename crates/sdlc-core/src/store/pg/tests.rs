//! The PostgreSQL store against a real server (`sdlc-pgtest`'s throwaway cluster).

use super::*;

fn fresh() -> String {
    sdlc_pgtest::Cluster::shared()
        .expect("the PostgreSQL tests need a server")
        .fresh_database()
        .unwrap()
}

#[test]
fn connecting_migrates_a_new_database_to_the_latest_schema() {
    let url = fresh();
    let db = PgDb::connect(&url, 2).unwrap();
    assert_eq!(db.schema_version().unwrap(), LATEST_SCHEMA);
    // Connecting again finds nothing to do.
    let again = PgDb::connect(&url, 2).unwrap();
    assert_eq!(again.schema_version().unwrap(), LATEST_SCHEMA);
}

#[test]
fn daemons_starting_at_once_migrate_once() {
    let url = fresh();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgDb::connect(&url, 1).map(|db| db.schema_version()))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap().unwrap(), LATEST_SCHEMA);
    }
}

#[test]
fn a_database_written_by_a_newer_sdlc_is_refused_by_name() {
    let url = fresh();
    PgDb::connect(&url, 1).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .execute(
            "UPDATE sdlc_schema SET version = $1",
            &[&(LATEST_SCHEMA + 1)],
        )
        .unwrap();
    let err = PgDb::connect(&url, 1).unwrap_err().to_string();
    assert!(err.contains("written by a newer sdlc"), "{err}");
    assert!(
        err.contains(&format!("schema {}", LATEST_SCHEMA + 1)),
        "{err}"
    );
    assert!(err.contains("upgrade sdlc"), "{err}");
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let err = PgDb::connect("postgres://me:secret@127.0.0.1:1/nothing", 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("postgres://me:***@127.0.0.1:1/nothing"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn urls_are_told_from_file_paths() {
    assert!(is_postgres_url("postgres://u@h/db"));
    assert!(is_postgres_url("postgresql://u@h/db"));
    assert!(!is_postgres_url(".sdlc/orchestrator.db"));
    assert_eq!(shown_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        shown_url("postgres://u@h/db?sslmode=disable&password=secret"),
        "postgres://u@h/db?sslmode=disable&password=***"
    );
}

#[test]
fn nodes_register_renew_their_lease_and_a_live_name_is_not_taken_twice() {
    use chrono::{Duration, TimeZone, Utc};
    let db = PgDb::connect(&fresh(), 2).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    let lease = Duration::seconds(30);
    db.register_node("a", t0, t0 + lease).unwrap();
    db.register_node("b", t0, t0 + lease).unwrap();
    let err = db
        .register_node("a", t0 + Duration::seconds(10), t0 + Duration::seconds(40))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'a' already holds a live lease"), "{err}");
    assert!(err.contains("another node name"), "{err}");
    // a renews; b does not and its lease runs out.
    let t1 = t0 + Duration::seconds(20);
    assert!(db.heartbeat("a", t1, t1 + lease).unwrap());
    let later = t0 + Duration::seconds(45);
    let nodes = db.nodes().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(nodes[0].alive_at(later), "a renewed its lease");
    assert!(!nodes[1].alive_at(later), "b's lease ran out");
    assert_eq!(nodes[0].heartbeat_at, t1);
    // A heartbeat never shortens a lease.
    assert!(db.heartbeat("a", t1, t0).unwrap());
    assert_eq!(db.nodes().unwrap()[0].lease_until, t1 + lease);
    // b's name may be taken again now that its lease is over.
    db.register_node("b", later, later + lease).unwrap();
    // A node the others forgot learns it on its next heartbeat.
    db.forget_node("a").unwrap();
    assert!(!db.heartbeat("a", later, later + lease).unwrap());
    assert_eq!(db.nodes().unwrap().len(), 1);
}
