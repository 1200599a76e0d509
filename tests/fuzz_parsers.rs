//! Property tests of the two parsers that read user files (inventory, playbooks): on any input
//! — random bytes, or the example inventory and sample playbook with random edits — they
//! return a value or an error, never panic. Bounded case counts keep CI time small.

use std::path::Path;

use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../inventory/example.yaml");
const SAMPLE: &str = include_str!("../playbooks/sample.yaml");
const DEPLOY: &str = include_str!("../playbooks/deploy.yaml");

fn inventory() -> pgha::inventory::Inventory {
    pgha::inventory::parse(Path::new("example.yaml"), EXAMPLE.as_bytes())
        .expect("example is valid")
        .inventory
}

/// Applies `edits` (position, kind, byte) to `text`: delete, insert or replace one byte.
fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for &(pos, kind, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = pos % b.len();
        match kind % 3 {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, byte),
            _ => b[i] = byte,
        }
    }
    b
}

/// Bytes that YAML finds interesting.
fn yaml_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b':'),
        Just(b'-'),
        Just(b' '),
        Just(b'\n'),
        Just(b'['),
        Just(b']'),
        Just(b'{'),
        Just(b'}'),
        Just(b'&'),
        Just(b'*'),
        Just(b'!'),
        Just(b'"'),
        Just(b'\''),
        Just(b'#'),
        Just(b'\t'),
        any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn inventory_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = pgha::inventory::parse(Path::new("fuzz.yaml"), &bytes);
    }

    #[test]
    fn inventory_parser_never_panics_on_edited_example(edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_byte()), 1..12)) {
        let bytes = mutate(EXAMPLE, &edits);
        if let Err(pgha::inventory::LoadError::Invalid { errors, .. }) = pgha::inventory::parse(Path::new("fuzz.yaml"), &bytes) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn playbook_parser_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_byte()), 1..12), which in 0..2u8) {
        let inv = inventory();
        let base = if which == 0 { SAMPLE } else { DEPLOY };
        let bytes = mutate(base, &edits);
        let _ = pgha::playbook::parse(Path::new("fuzz.yaml"), &bytes, &inv);
    }
}
