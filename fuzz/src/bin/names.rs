//! AFL target: `mcpgw_core::fuzzing::names`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::names(data));
}
