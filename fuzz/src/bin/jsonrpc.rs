//! AFL target: `mcpgw_core::fuzzing::jsonrpc`.
fn main() {
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::jsonrpc(data));
}
