# mcpgw, the native gateway, as a small non-root image.
#   docker build -t mcpgw .
#   docker run -p 4444:4444 -e MCPGW_JWT_SECRET=... -v mcpgw-data:/data mcpgw
# Build stage: the release binary (the wasm32 target in rust-toolchain.toml is not needed here).
FROM rust:1-slim-bookworm AS build
ENV RUSTUP_TOOLCHAIN=stable CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mcpgw-native \
    && strip target/release/mcpgw \
    && cp target/release/mcpgw /mcpgw

# Final stage: Debian slim with CA certificates (for https upstreams), the binary, a data volume.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin mcpgw \
    && mkdir -p /data \
    && chown mcpgw:mcpgw /data
COPY --from=build /mcpgw /usr/local/bin/mcpgw
USER 10001:10001
WORKDIR /data
# Listen on every interface inside the container (Host checks stay off unless
# MCPGW_ALLOWED_HOSTS is set); the registry and its key file live in the /data volume.
ENV MCPGW_HOST=0.0.0.0 \
    MCPGW_PORT=4444 \
    MCPGW_DATABASE=/data/mcpgw.db
VOLUME ["/data"]
EXPOSE 4444
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/mcpgw", "health"]
ENTRYPOINT ["/usr/local/bin/mcpgw"]
CMD ["serve"]
