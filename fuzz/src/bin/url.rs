//! AFL target: `mcpgw_core::fuzzing::url`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::url(data));
}
