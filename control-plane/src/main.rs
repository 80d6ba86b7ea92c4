fn main() {
    eprintln!("control-plane: not wired up yet");
    std::process::exit(2);
}
