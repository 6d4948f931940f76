import Foundation
import BMCore

/// The entries of a zip archive whose members are stored uncompressed, as `torch.save`
/// writes them (PyTorch's `inline_container.cc`: method 0, ZIP64, data aligned to 64
/// bytes by an extra field). Reads the central directory (ZIP64 records when present),
/// and checks every offset and size against the file; compressed members are refused
/// by name. Nothing is read until a member is asked for.
struct ZipArchive {
    struct Member { let name: String; let offset: Int; let size: Int; let method: Int }

    let path: String
    let file: ReadOnlyFile
    let members: [Member]
    private let byName: [String: Member]

    init(file: ReadOnlyFile) throws {
        self.file = file
        path = file.path
        let path = file.path, n = file.size
        func bad(_ m: String) -> BMError { .invalid("\(path): not a readable torch.save zip archive: \(m)") }
        /// Little-endian fields of a byte array.
        func u16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ b: [UInt8], _ o: Int) -> Int { u16(b, o) | u16(b, o + 2) << 16 }
        func u64(_ b: [UInt8], _ o: Int) throws -> Int {
            let v = UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32
            guard v < UInt64(Int.max) else { throw bad("a 64-bit size or offset out of range") }
            return Int(v)
        }
        // End of central directory: the last signature in the final 64 KiB + 22 bytes
        guard n >= 22 else { throw bad("\(n) bytes, too short for a zip archive") }
        let tailStart = max(0, n - 22 - 65535 - 20)
        let tail = try file.read(at: tailStart, count: n - tailStart)
        var e = -1
        var o = tail.count - 22
        while o >= 0 {
            if u32(tail, o) == 0x0605_4B50 { e = o; break }
            o -= 1
        }
        guard e >= 0 else { throw bad("no end-of-central-directory record (truncated?)") }
        var count = u16(tail, e + 10), cdSize = u32(tail, e + 12), cdOffset = u32(tail, e + 16)
        // ZIP64: a locator just before the record points at the ZIP64 end record
        if e >= 20, u32(tail, e - 20) == 0x0706_4B50 {
            let z = try u64(tail, e - 20 + 8)
            guard n >= 56, z <= n - 56 else { throw bad("the ZIP64 end record lies outside the file") }
            let rec = try file.read(at: z, count: 56)
            guard u32(rec, 0) == 0x0606_4B50 else { throw bad("the ZIP64 end record is missing") }
            count = try u64(rec, 32); cdSize = try u64(rec, 40); cdOffset = try u64(rec, 48)
        }
        guard cdOffset <= n, cdSize <= n - cdOffset else {
            throw bad("the central directory (\(cdSize) bytes at \(cdOffset)) lies outside the \(n)-byte file")
        }
        guard count <= cdSize / 46 else { throw bad("\(count) entries cannot fit a \(cdSize)-byte central directory") }
        guard cdSize <= max(count, 1) * (46 + 3 * 65535) else { throw bad("a \(cdSize)-byte central directory for \(count) entries") }
        let cd = try file.read(at: cdOffset, count: cdSize)
        var list: [Member] = []
        var p = 0
        for _ in 0..<count {
            guard p + 46 <= cd.count, u32(cd, p) == 0x0201_4B50 else { throw bad("a damaged central directory entry at byte \(cdOffset + p)") }
            let method = u16(cd, p + 10)
            var csize = u32(cd, p + 20), usize = u32(cd, p + 24)
            let nameLen = u16(cd, p + 28), extraLen = u16(cd, p + 30), commentLen = u16(cd, p + 32)
            var local = u32(cd, p + 42)
            guard p + 46 + nameLen + extraLen + commentLen <= cd.count else { throw bad("a central directory entry runs past its end") }
            guard let name = String(validating: cd[(p + 46)..<(p + 46 + nameLen)], as: UTF8.self) else { throw bad("an entry name that is not UTF-8") }
            // ZIP64 extra field (id 1): the 0xFFFFFFFF fields, in order usize, csize, local
            var x = p + 46 + nameLen
            let xEnd = x + extraLen
            while x + 4 <= xEnd {
                let id = u16(cd, x), len = u16(cd, x + 2)
                guard x + 4 + len <= xEnd else { throw bad("\(name): a damaged extra field") }
                if id == 1 {
                    var q = x + 4
                    for field in 0..<3 where [usize, csize, local][field] == 0xFFFF_FFFF {
                        guard q + 8 <= x + 4 + len else { throw bad("\(name): a short ZIP64 extra field") }
                        let v = try u64(cd, q); q += 8
                        if field == 0 { usize = v } else if field == 1 { csize = v } else { local = v }
                    }
                }
                x += 4 + len
            }
            guard n >= 30, local <= n - 30 else { throw bad("\(name): its local header (at \(local)) lies outside the file") }
            let lh = try file.read(at: local, count: 30)
            guard u32(lh, 0) == 0x0403_4B50 else { throw bad("\(name): no local header at \(local)") }
            let start = local + 30 + u16(lh, 26) + u16(lh, 28)
            guard start <= n, csize <= n - start else { throw bad("\(name): its \(csize) bytes at \(start) run past the end of the \(n)-byte file (truncated?)") }
            if method == 0 && csize != usize { throw bad("\(name): stored with sizes \(csize) ≠ \(usize)") }
            list.append(Member(name: name, offset: start, size: csize, method: method))
            p += 46 + nameLen + extraLen + commentLen
        }
        var index: [String: Member] = [:]
        for m in list {
            guard index[m.name] == nil else { throw bad("two members named \(m.name)") }
            index[m.name] = m
        }
        members = list
        byName = index
    }

    func member(_ name: String) -> Member? { byName[name] }

    /// The bytes of a stored (uncompressed) member.
    func bytes(_ m: Member) throws -> [UInt8] {
        guard m.method == 0 else {
            throw BMError.invalid("\(path): member \(m.name) is compressed (method \(m.method)); torch.save stores members uncompressed — was the archive re-zipped? Re-save it with torch.save")
        }
        return try file.read(at: m.offset, count: m.size)
    }
}
