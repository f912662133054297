import Foundation
import Testing
@testable import UVLoop

@Suite("Streams: UDP endpoints")
struct DatagramTests {
    @Test(.timeLimit(.minutes(1))) func roundTrip() throws {
        let (request, reply, clientAddress) = try onFreshLoop { loop in
            let server = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            #expect(server.localAddress.port > 0)
            #expect(server.remoteAddress == nil)
            let echoing = loop.createTask { () async throws -> Datagram in
                let datagram = try await server.receive()
                try server.send(Array("pong".utf8) + datagram.data, to: datagram.address)
                return datagram
            }
            let client = try await loop.createDatagramEndpoint(remoteAddress: ("127.0.0.1", server.localAddress.port))
            #expect(client.remoteAddress == server.localAddress)
            try client.send(Array("ping".utf8))
            let reply = try await client.receive()
            let request = try await echoing.value
            client.close()
            server.close()
            await client.waitClosed()
            await server.waitClosed()
            return (request, reply, client.localAddress)
        }
        #expect(request.data == Array("ping".utf8))
        #expect(request.address == clientAddress)
        #expect(reply.data == Array("pongping".utf8))
        #expect(!reply.truncated)
    }

    @Test(.timeLimit(.minutes(1))) func manyDatagramsAsASequence() throws {
        let received = try onFreshLoop { loop in
            let server = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            let client = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            for index in 0..<100 { try client.send([UInt8(index)], to: server.localAddress) }
            var received: [UInt8] = []
            for try await datagram in server {
                received += datagram.data
                if received.count == 100 { server.close() }
            }
            client.close()
            return received
        }
        // Loopback UDP neither drops nor reorders at this rate.
        #expect(received == (0..<100).map { UInt8($0) })
    }

    @Test(.timeLimit(.minutes(1))) func ipv6AndEmptyDatagrams() throws {
        let datagram = try onFreshLoop { loop in
            let server = try await loop.createDatagramEndpoint(localAddress: ("::1", 0))
            let client = try await loop.createDatagramEndpoint(remoteAddress: ("::1", server.localAddress.port))
            try client.send([])
            let datagram = try await server.receive()
            client.close()
            server.close()
            return datagram
        }
        #expect(datagram.data.isEmpty)
        #expect(datagram.address?.family == .ipv6)
    }

    @Test(.timeLimit(.minutes(1))) func refusedPortIsReportedToReceive() throws {
        try onFreshLoop { loop in
            // A connected UDP socket learns of ICMP "port unreachable" as ECONNREFUSED.
            let client = try await loop.createDatagramEndpoint(remoteAddress: ("127.0.0.1", unusedPort()))
            try client.send(Array("anyone?".utf8))
            do {
                _ = try await client.receive()
                Issue.record("expected ECONNREFUSED")
            } catch {
                #expect(isUVError(error, .ECONNREFUSED), "\(error)")
            }
            client.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func badInput() throws {
        try onFreshLoop { loop in
            await #expect(throws: StreamError.self) { try await loop.createDatagramEndpoint() }
            await #expect(throws: UVError.EINVAL) { try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 99999)) }
            let endpoint = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            // An unconnected endpoint needs a destination.
            #expect(throws: StreamError.self) { try endpoint.send([1]) }
            #expect(throws: UVError.self) { try endpoint.send([UInt8](repeating: 0, count: 70_000), to: endpoint.localAddress) }
            let connected = try await loop.createDatagramEndpoint(remoteAddress: ("127.0.0.1", endpoint.localAddress.port))
            #expect(throws: StreamError.self) { try connected.send([1], to: try SocketAddress(host: "127.0.0.1", port: 9)) }
            endpoint.close()
            #expect(throws: StreamError.closed) { try endpoint.send([1], to: endpoint.localAddress) }
            await #expect(throws: StreamError.closed) { try await endpoint.receive() }
            connected.close()
            let taken = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            await #expect(throws: UVError.EADDRINUSE) {
                try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", taken.localAddress.port))
            }
            taken.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func closeWakesAWaitingReceive() throws {
        try onFreshLoop { loop in
            let endpoint = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
            let waiting = loop.createTask { try await endpoint.receive() }
            try await Task.sleep(for: .milliseconds(20))
            endpoint.close()
            await #expect(throws: StreamError.closed) { try await waiting.value }
        }
    }
}

@Suite("Streams: UDP endpoint lifetime")
struct DatagramLifetimeTests {
    @Test(.timeLimit(.minutes(1))) func droppingAnEndpointClosesItsSocket() throws {
        try onFreshLoop { loop in
            var port = 0
            do {
                let endpoint = try await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", 0))
                port = endpoint.localAddress.port
            }
            // The drop posted a close to the loop; once it ran, the port is free again.
            var rebound: DatagramEndpoint?
            for _ in 0..<100 where rebound == nil {
                await Task.yield()
                rebound = try? await loop.createDatagramEndpoint(localAddress: ("127.0.0.1", port))
            }
            #expect(rebound != nil)
            rebound?.close()
        }
    }
}
