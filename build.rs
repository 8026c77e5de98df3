//! Gives the shared library its SONAME, `libqueue.so.<major>`: programs linked with
//! `-lqueue` then record `NEEDED libqueue.so.0`, not the unversioned development link,
//! and `make install` installs `libqueue.so.0.1.0` with the links `libqueue.so.0` and
//! `libqueue.so`. Only the cdylib gets the flag; the rlib and the staticlib have no SONAME.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libqueue.so.{major}");
    }
}
