//! Build script of every function (`build = "../build.rs"`) and of the bench's baseline: links the `bootstrap` as a
//! position-dependent executable (`-no-pie`).
//!
//! A PIE needs a dynamic relocation for every pointer in its read-only data (vtables, string
//! and slice references), which the loader applies at each start: about 0.77 MB of
//! `.rela.dyn` in a function binary, and work for the loader before `main`. The price: the
//! executable's own code and data load at a fixed address (no ASLR for them; shared
//! libraries, stack and heap stay randomised). Unwinding, and so `lambda_runtime`'s panic
//! reports, is unaffected.

fn main() {
    println!("cargo::rerun-if-changed={}", file!());
    // Only for Linux targets, whose linkers (gcc, clang, `zig cc` under cargo-lambda) know the flag.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
