import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The console's static files, `GET /app/assets/{path}`: the styles and scripts of
/// `Console/Assets/` (not its templates), read once into memory, answered with their type,
/// `Cache-Control: public, max-age=3600` and `nosniff`. Only files that are there are served, so
/// `..`, absolute paths and anything outside the directory are 404.
enum ConsoleAssets {
    struct File: Sendable {
        let bytes: ByteBuffer
        let contentType: String
    }

    /// Every servable file by its path below `Assets/` (`css/console.css`).
    static let files: [String: File] = load()

    static let contentTypes = [
        "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
        "ico": "image/x-icon", "woff2": "font/woff2", "json": "application/json",
    ]

    /// The file at `path` (the part after `/app/assets/`), nil for anything else.
    static func file(at path: String) -> File? {
        // Never a path the map could not hold; refused before any lookup all the same.
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == ".." || $0 == "." || $0.isEmpty })
        else { return nil }
        return files[path]
    }

    private static func load() -> [String: File] {
        guard let root = ConsoleView.assetsDirectory?.standardizedFileURL, let walker = FileManager.default.enumerator(atPath: root.path) else { return [:] }
        var files: [String: File] = [:]
        for case let relative as String in walker {
            guard !relative.hasPrefix("templates/"), let type = contentTypes[(relative as NSString).pathExtension.lowercased()],
                  let data = FileManager.default.contents(atPath: root.appendingPathComponent(relative).path)
            else { continue }
            files[relative] = File(bytes: ByteBuffer(bytes: data), contentType: type)
        }
        return files
    }
}

extension Edge {
    func addConsoleAssetRoutes(to router: Router<BasicRequestContext>) {
        router.get("/app/assets/**") { _, context in
            let path = context.parameters.getCatchAll().joined(separator: "/")
            guard let file = ConsoleAssets.file(at: path) else {
                return Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8", .xContentTypeOptions: "nosniff"],
                                body: .init(byteBuffer: ByteBuffer(string: "Not found\n")))
            }
            return Response(status: .ok, headers: [.contentType: file.contentType, .cacheControl: "public, max-age=3600", .xContentTypeOptions: "nosniff"],
                            body: .init(byteBuffer: file.bytes))
        }
    }
}
