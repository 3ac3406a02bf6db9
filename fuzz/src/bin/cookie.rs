//! AFL target: `mcpgw_core::fuzzing::cookie`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::cookie(data));
}
