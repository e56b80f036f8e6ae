# The psql-fleet image (`make image`); the chart's default image is this one, tagged
# psql-fleet:<appVersion>.
#
# Built on Debian 12 with the Rust release the project builds with; run on distroless's cc
# image for Debian 12: glibc, libgcc, OpenSSL and CA certificates, no shell and no package
# manager. The binary links OpenSSL (Git over HTTPS, through libgit2) and zlib dynamically;
# zlib is not in the distroless image, so it is copied from the build stage (tests/image.rs
# checks that every library the binary needs is one or the other).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# rust-toolchain.toml names "stable" for developers' machines; the image's toolchain is the
# one to build with, so the file would only make rustup fetch another.
RUN rm -f rust-toolchain.toml \
 && cargo build --release --locked --bin psql-fleet \
 && mkdir -p /out/lib \
 && cp target/release/psql-fleet /out/ \
 && cp -L "$(ldconfig -p | awk '$1 == "libz.so.1" { print $NF; exit }')" /out/lib/libz.so.1

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/psql-fleet /usr/local/bin/psql-fleet
COPY --from=build /out/lib/libz.so.1 /usr/lib/libz.so.1
# distroless's nonroot user; the chart runs it with a read-only root filesystem, the Git
# clone and /tmp on emptyDirs.
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/psql-fleet"]
CMD ["run", "--help"]
