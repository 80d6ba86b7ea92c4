//! `ambit-httpapp`: see `ambit_e2e::httpapp`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(ambit_e2e::httpapp::main(&args));
}
