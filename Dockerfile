# syntax=docker/dockerfile:1
# Build: docker build -t authd .
# Run:   openssl rand -base64 32 > master.key   # once; keep it apart from the data volume
#        docker run -p 8000:8000 -v authd-data:/var/lib/authd \
#            -e AUTHD_MASTER_KEY="$(cat master.key)" \
#            -e AUTHD_PUBLIC_URL=https://auth.example.com authd
# AUTHD_MASTER_KEY seals the signing keys stored in the volume (see .env.example); without it
# authd runs, keeps them in clear, and warns at start. AUTHD_PUBLIC_URL is the address
# clients reach authd at: the discovery document names its endpoints with it (unset, it
# would name the container's own 0.0.0.0:8000).

FROM rust:1-slim-bookworm AS build
# make: jemalloc's C build (tikv-jemalloc-sys) runs it; the rust:slim images leave it out.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin authd \
    && strip target/release/authd

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/authd --shell /usr/sbin/nologin authd \
    && mkdir -p /var/lib/authd \
    && chown authd:authd /var/lib/authd
COPY --from=build /src/target/release/authd /usr/local/bin/authd
USER authd
WORKDIR /var/lib/authd
ENV AUTHD_ADDR=0.0.0.0:8000 \
    DATABASE_URL=sqlite:///var/lib/authd/authd.db \
    AUTHD_LOG_FORMAT=json
VOLUME ["/var/lib/authd"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["authd", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["authd"]
CMD ["serve"]
