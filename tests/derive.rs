//! What `#[derive(Shared)]` generates: fingerprints, schemas, conversions.
#![allow(missing_docs, reason = "test types")]

use shmem::{Schema, Segment, Shared};

mod v1 {
    #[derive(shmem::Shared)]
    pub struct Point {
        pub x: u32,
        pub y: u32,
    }
}
mod renamed {
    #[derive(shmem::Shared)]
    pub struct Point {
        pub x: u32,
        pub z: u32,
    }
}
mod reordered {
    #[derive(shmem::Shared)]
    pub struct Point {
        pub y: u32,
        pub x: u32,
    }
}
mod retyped {
    #[derive(shmem::Shared)]
    pub struct Point {
        pub x: u32,
        pub y: i32,
    }
}
mod resized {
    #[derive(shmem::Shared)]
    pub struct Point {
        pub x: u32,
        pub y: u64,
    }
}
mod type_renamed {
    #[derive(shmem::Shared)]
    pub struct Spot {
        pub x: u32,
        pub y: u32,
    }
}
mod same_again {
    /// Same definition in another module: must agree with `v1`.
    #[derive(shmem::Shared)]
    pub struct Point {
        pub x: u32,
        pub y: u32,
    }
}
mod nested_changed {
    #[derive(shmem::Shared)]
    pub struct Outer {
        pub p: super::retyped::Point,
    }
}
mod nested_orig {
    #[derive(shmem::Shared)]
    pub struct Outer {
        pub p: super::v1::Point,
    }
}

#[test]
fn fingerprint_changes_with_layout() {
    let base = <v1::Point as Shared>::FINGERPRINT;
    assert_eq!(base, <same_again::Point as Shared>::FINGERPRINT, "same definition, same fingerprint");
    for (what, other) in [
        ("field renamed", <renamed::Point as Shared>::FINGERPRINT),
        ("fields reordered", <reordered::Point as Shared>::FINGERPRINT),
        ("field type changed (same size)", <retyped::Point as Shared>::FINGERPRINT),
        ("field type changed (size)", <resized::Point as Shared>::FINGERPRINT),
        ("type renamed", <type_renamed::Spot as Shared>::FINGERPRINT),
    ] {
        assert_ne!(base, other, "{what}");
    }
    assert_ne!(
        <nested_orig::Outer as Shared>::FINGERPRINT,
        <nested_changed::Outer as Shared>::FINGERPRINT,
        "a change inside a nested struct changes the outer fingerprint"
    );
}

#[derive(Shared, Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    pub value: i16,
    pub valid: bool,
}

#[derive(Shared, Debug, Default, PartialEq)]
pub struct Grid {
    /// Documented fields keep their docs on the accessor.
    pub cells: [Cell; 3],
    pub r#type: u8,
    pub matrix: [[f32; 2]; 2],
}

#[test]
fn schema_describes_nested_arrays_and_raw_names() {
    let schema = Schema::of::<Grid>();
    let rows: Vec<(u64, u64, u64, &str, &str)> =
        schema.entries.iter().map(|e| (e.offset, e.size, e.count, e.kind.as_str(), e.path.as_str())).collect();
    assert_eq!(
        rows,
        [
            (0, 12, 3, "struct Cell", "cells"),
            (0, 2, 1, "i16", "cells[].value"),
            (2, 1, 1, "bool", "cells[].valid"),
            (12, 1, 1, "u8", "type"),
            (16, 16, 4, "f32", "matrix"),
        ]
    );
    assert_eq!(std::mem::size_of::<GridShared>(), 32);
    assert_eq!(<Grid as Shared>::type_name(), "Grid");
    assert_eq!(<[Cell; 3] as Shared>::type_name(), "[Cell; 3]");
}

#[test]
fn store_and_load_round_trip() {
    let name = format!("shmem-test-derive-{}", std::process::id());
    let value = Grid {
        cells: [Cell { value: -1, valid: true }, Cell::default(), Cell { value: 300, valid: false }],
        r#type: 9,
        matrix: [[1.0, 2.0], [3.5, -0.0]],
    };
    let seg = Segment::create(&name, &value).unwrap();
    assert_eq!(Segment::snapshot(&seg), value);
    assert_eq!(seg.cells()[2].value().load(), 300);
    assert_eq!(seg.r#type().load(), 9);
    seg.matrix()[1][0].store(7.0);
    Segment::store(&seg, &Grid::default());
    assert_eq!(Segment::snapshot(&seg), Grid::default());
}

mod visibility {
    #[derive(shmem::Shared)]
    pub struct Mixed {
        pub open: u32,
        hidden: u32,
    }

    pub fn read_hidden(m: &MixedShared) -> u32 {
        m.hidden().load()
    }
}

#[test]
fn accessors_keep_field_visibility() {
    let name = format!("shmem-test-vis-{}", std::process::id());
    let seg = Segment::<visibility::Mixed>::create_zeroed(&name).unwrap();
    seg.open().store(1);
    assert_eq!(visibility::read_hidden(&seg), 0);
}

/// Regression: generated code once bound `count`, `value`, `layout` ...,
/// which a user's constant of the same name turned into a constant pattern.
mod hygiene {
    #![allow(non_upper_case_globals, dead_code)]
    const count: usize = 3;
    const value: u8 = 1;
    const layout: u8 = 2;
    const schema: u8 = 3;
    const offset: u8 = 4;
    const prefix: u8 = 5;
    const path: u8 = 6;
    const h: u8 = 7;

    #[derive(shmem::Shared, Default)]
    pub struct Clashing {
        pub count: u64,
        pub value: [u8; count],
    }
}

#[test]
fn generated_names_do_not_clash_with_user_constants() {
    let schema = Schema::of::<hygiene::Clashing>();
    assert_eq!(schema.entries.len(), 2);
}
