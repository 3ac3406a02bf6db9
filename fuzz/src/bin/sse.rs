//! AFL target: `mcpgw_core::fuzzing::sse`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::sse(data));
}
