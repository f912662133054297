import Glibc

/// B12/B12b: the certificate chain and private key (PEM) every TLS server presents, made by
/// run.py with the `openssl` command line (ECDSA P-256) and handed over in the environment as
/// `BENCH_TLS_CERT` and `BENCH_TLS_KEY`.
public struct TLSFiles: Sendable {
    public var certificateChain: String
    public var privateKey: String

    public struct Missing: Error, CustomStringConvertible {
        public var description: String { "BENCH_TLS_CERT and BENCH_TLS_KEY must name the PEM files (run.py sets them)" }
    }

    /// - Throws: `Missing` when either variable is unset or empty.
    public static func fromEnvironment() throws -> TLSFiles {
        guard let chain = getenv("BENCH_TLS_CERT").map({ String(cString: $0) }), !chain.isEmpty,
              let key = getenv("BENCH_TLS_KEY").map({ String(cString: $0) }), !key.isEmpty
        else { throw Missing() }
        return TLSFiles(certificateChain: chain, privateKey: key)
    }
}
