//! Compile-fail tests: each layout rule of `#[derive(Shared)]` is a compile
//! error with a message that names the field and says what to do.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`
//! (and read the diff) when rustc's output changes.

#[test]
fn layout_rules() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
