# syntax=docker/dockerfile:1
#
# osprey's container image: the sensor built in release mode on Debian
# bookworm, run on bookworm-slim with libpcap and nft, as an unprivileged
# user. Not built in CI (no container engine there); the Helm chart
# (helm/osprey) runs it.
#
#   docker build -t osprey:0.1.0 .
#   docker run --rm --net=host --cap-add NET_RAW --cap-add NET_ADMIN osprey:0.1.0 -i eth0
#
# Capabilities: the user is not root, so the two osprey needs come from
# file capabilities on /usr/local/bin/osprey (capture, promiscuous mode)
# and /usr/sbin/nft (its nftables table), which the kernel grants up to
# what the container was given: the container must be allowed both
# (--cap-add, or the chart's securityContext.capabilities.add). Without
# them the kernel refuses to start osprey ("operation not permitted").

ARG RUST_VERSION=1.91

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin osprey \
 && install -D -m 0755 target/release/osprey /out/osprey

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 nftables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 osprey \
 && useradd --system --uid 65532 --gid osprey --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin osprey
COPY --from=build /out/osprey /usr/local/bin/osprey
# The bundled models are also compiled into the binary; these copies are
# what a config's models.specs can name, and what a custom model is
# compared with (osprey check --model).
COPY models/*.toml models/*.onnx /usr/share/osprey/models/
COPY rules/ /usr/share/osprey/rules/
COPY docs/osprey.example.toml /usr/share/osprey/osprey.example.toml
# File capabilities (see above), set with libcap's setcap, which is removed
# again; then no set-user-ID or set-group-ID program is left to escalate
# through. Directories osprey writes by default belong to its user.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_raw,cap_net_admin=ep /usr/local/bin/osprey \
 && setcap cap_net_admin=ep /usr/sbin/nft \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} + \
 && install -d -o osprey -g osprey -m 0700 /var/lib/osprey /var/lib/osprey/spool /var/log/osprey \
 && install -d -m 0755 /etc/osprey

USER 65532:65532
ENV OSPREY_LOG=warn,osprey::action=info
# /metrics, /healthz, /readyz (metrics.listen_addr).
EXPOSE 9750
ENTRYPOINT ["/usr/local/bin/osprey", "run"]
