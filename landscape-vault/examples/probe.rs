//! temporary probe
fn main() {
    let dir = "/work/shared/corpus/codesphere-ci";
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in paths {
        let src = std::fs::read_to_string(&p).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = src.clone();
        std::thread::spawn(move || { let r = landscape_spec::parse_str("x", &s2); tx.send(r.landscape.is_some()).ok(); });
        match rx.recv_timeout(std::time::Duration::from_secs(3)) {
            Ok(ok) => println!("ok {ok} {}", p.display()),
            Err(_) => { println!("HANG {}", p.display()); std::process::exit(3); }
        }
    }
}
