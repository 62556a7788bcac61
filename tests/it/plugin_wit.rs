//! `netlog plugin wit DIR`: the plugin interface, written out by the binary so
//! a plugin can be built without a copy of this repository.

use std::path::Path;

use crate::common::*;

/// The written file is exactly the repository's `wit/netlog-plugin.wit`,
/// in a directory created on the way.
#[test]
fn plugin_wit_writes_the_interface() {
    let dir = data_dir();
    let target = dir.path().join("new/wit");
    let run = run_netlog(["plugin".as_ref(), "wit".as_ref(), target.as_os_str()]);
    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status,
        run.stderr
    );
    let written = std::fs::read_to_string(target.join("netlog-plugin.wit")).expect("written");
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("wit/netlog-plugin.wit"),
    )
    .expect("the repository's WIT");
    assert_eq!(written, source);
    assert!(run.stdout.contains("netlog-plugin.wit"), "{}", run.stdout);
}

/// A directory that cannot be made is an error naming the path, not a panic.
#[test]
fn plugin_wit_reports_an_unwritable_directory() {
    let dir = data_dir();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write a file");
    let target = file.join("wit");
    let run = run_netlog(["plugin".as_ref(), "wit".as_ref(), target.as_os_str()]);
    assert!(!run.status.success(), "exit {:?}", run.status);
    assert!(
        run.stderr.contains("a-file/wit/netlog-plugin.wit"),
        "{}",
        run.stderr
    );
}
