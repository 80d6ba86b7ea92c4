mod capture;
mod netns;
fn main() {
    let c = capture::Capture::load(std::path::Path::new("/tmp/bpffs-probe"), std::path::Path::new("/sys/fs/cgroup/unified/ambit-probe"));
    match c { Ok(c) => { println!("{:?}", c.cgroup_links()); println!("{:?}", c.attached_at_root()); println!("{:?}", c.map_sizes()); } Err(e) => println!("ERR {e}") }
}
