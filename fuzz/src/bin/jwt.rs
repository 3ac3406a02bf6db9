//! AFL target: `mcpgw_core::fuzzing::jwt`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::jwt(data));
}
