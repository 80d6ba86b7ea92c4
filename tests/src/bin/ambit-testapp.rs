//! `ambit-testapp`: see `ambit_e2e::testapp`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(ambit_e2e::testapp::main(&args));
}
