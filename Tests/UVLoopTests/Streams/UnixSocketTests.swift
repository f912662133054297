import Foundation
import Testing
@testable import UVLoop

@Suite("Streams: Unix sockets")
struct UnixSocketTests {
    @Test(.timeLimit(.minutes(1))) func echoOverAUnixSocket() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/echo.sock"
        let (reply, existedWhileServing) = try onFreshLoop { loop in
            let server = try await loop.startUnixServer(path: path, echo)
            #expect(server.addresses == [SocketAddress(unixPath: path)])
            let (reader, writer) = try await loop.openUnixConnection(path: path)
            try writer.write(patternBytes(200_000))
            try writer.writeEOF()
            let reply = try await reader.read()
            writer.close()
            let existed = FileManager.default.fileExists(atPath: path)
            server.close()
            try await server.waitClosed()
            return (reply, existed)
        }
        #expect(reply == patternBytes(200_000))
        #expect(existedWhileServing)
        // The server removes its socket file when it closes.
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test(.timeLimit(.minutes(1))) func addressInUseByALiveServer() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/busy.sock"
        try onFreshLoop { loop in
            let server = try await loop.startUnixServer(path: path, echo)
            await #expect(throws: UVError.EADDRINUSE) { try await loop.startUnixServer(path: path, echo) }
            // The first server is untouched.
            let (reader, writer) = try await loop.openUnixConnection(path: path)
            try writer.write(Array("still here\n".utf8))
            #expect(try await reader.readLine() == Array("still here\n".utf8))
            writer.close()
            server.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aRegularFileIsInTheWay() throws {
        let directory = temporaryDirectory()
        let path = directory + "/file"
        _ = FileManager.default.createFile(atPath: path, contents: Data("x".utf8))
        defer { unlink(path); rmdir(directory) }
        try onFreshLoop { loop in
            await #expect(throws: UVError.EADDRINUSE) { try await loop.startUnixServer(path: path, echo) }
        }
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test(.timeLimit(.minutes(1))) func aStaleSocketFileIsReplaced() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/stale.sock"
        // A socket bound and closed without unlinking: nobody listens behind the file.
        let fd = try Socket.makeUnixListener(path: path)
        close(fd)
        #expect(Socket.isSocketFile(path))
        try onFreshLoop { loop in
            let server = try await loop.startUnixServer(path: path, echo)
            let (reader, writer) = try await loop.openUnixConnection(path: path)
            try writer.write(Array("fresh\n".utf8))
            #expect(try await reader.readLine() == Array("fresh\n".utf8))
            writer.close()
            server.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func pathErrors() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        try onFreshLoop { loop in
            await #expect(throws: UVError.ENOENT) { try await loop.startUnixServer(path: directory + "/missing/dir.sock", echo) }
            let long = directory + "/" + String(repeating: "x", count: 120)
            await #expect(throws: UVError.ENAMETOOLONG) { try await loop.startUnixServer(path: long, echo) }
            await #expect(throws: UVError.ENAMETOOLONG) { try await loop.openUnixConnection(path: long) }
            // 107 bytes still fit.
            let longest = directory + "/" + String(repeating: "y", count: 107 - directory.utf8.count - 1)
            #expect(longest.utf8.count == 107)
            let server = try await loop.startUnixServer(path: longest, echo)
            let (_, writer) = try await loop.openUnixConnection(path: longest)
            writer.close()
            server.close()
            try await server.waitClosed()
            await #expect(throws: UVError.EINVAL) { try await loop.startUnixServer(path: "", echo) }
            await #expect(throws: UVError.ENOENT) { try await loop.openUnixConnection(path: directory + "/nobody.sock") }
        }
    }

    @Test(.timeLimit(.minutes(1))) func connectingToAStaleSocketIsRefused() throws {
        let directory = temporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/refused.sock"
        let fd = try Socket.makeUnixListener(path: path)
        close(fd)
        defer { unlink(path) }
        try onFreshLoop { loop in
            await #expect(throws: UVError.ECONNREFUSED) { try await loop.openUnixConnection(path: path) }
        }
    }
}
