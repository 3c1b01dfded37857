//! The `cachew` command line.

fn main() {
    eprintln!("cachew: not yet implemented");
    std::process::exit(1);
}
