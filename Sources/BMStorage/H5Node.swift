import CHDF5

/// A container of links: the file's root group or any group. Navigation,
/// groups and datasets are created through nodes.
public class H5Node: H5Object {

    /// Opens an existing group; `name` may be a nested path ("a/b").
    public func group(_ name: String) throws -> H5Group {
        let ctx = context(name)
        let loc = try openID(ctx)
        let gid = try ctx.id("cannot open group") { H5Gopen2(loc, name, bm_h5p_default()) }
        return H5Group(id: gid, filePath: filePath, name: h5Join(self.name, name))
    }

    /// Creates a group, creating missing intermediate groups of a nested
    /// path ("a/b/c"). Fails if the last component already exists.
    public func createGroup(_ name: String) throws -> H5Group {
        let ctx = context(name)
        let loc = try openID(ctx)
        let lcpl = try ctx.id("cannot create link property list for") { H5Pcreate(bm_h5p_link_create()) }
        defer { closePlist(lcpl) }
        try ctx.check("cannot set intermediate-group creation for") { H5Pset_create_intermediate_group(lcpl, 1) }
        let gid = try ctx.id("cannot create group") {
            H5Gcreate2(loc, name, lcpl, bm_h5p_default(), bm_h5p_default())
        }
        return H5Group(id: gid, filePath: filePath, name: h5Join(self.name, name))
    }

    /// Opens the group if it exists, else creates it (with intermediates).
    public func requireGroup(_ name: String) throws -> H5Group {
        exists(name) ? try group(name) : try createGroup(name)
    }

    /// Whether a link `name` (possibly a nested path) exists. Never throws:
    /// a missing intermediate group, or a closed node, gives `false`.
    public func exists(_ name: String) -> Bool {
        guard id >= 0 else { return false }
        H5Runtime.prepare()
        let absolute = name.hasPrefix("/")
        let parts = name.split(separator: "/", omittingEmptySubsequences: true)
        if parts.isEmpty { return true }   // "/" or "" or "."
        var prefix = absolute ? "" : "."
        for part in parts {
            if part == "." { continue }
            prefix += "/" + part
            if H5Lexists(id, prefix, bm_h5p_default()) <= 0 { return false }
        }
        return true
    }

    /// Names of the links directly in this node, sorted.
    public func children() throws -> [String] {
        let ctx = context()
        let loc = try openID(ctx)
        var info = H5G_info_t()
        try ctx.check("cannot list group") { H5Gget_info(loc, &info) }
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for i in 0..<info.nlinks {
            let length = try ctx.check("cannot read link name #\(i) of group") {
                H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, bm_h5p_default())
            }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try ctx.check("cannot read link name #\(i) of group") {
                H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, buffer.count, bm_h5p_default())
            }
            names.append(stringFromCBuffer(buffer))
        }
        return names.sorted()
    }

    /// Removes the link `name` (the space is not reclaimed inside the file).
    public func remove(_ name: String) throws {
        let ctx = context(name)
        let loc = try openID(ctx)
        try ctx.check("cannot remove") { H5Ldelete(loc, name, bm_h5p_default()) }
    }
}

/// A group inside a file. Close it (or drop it) when done.
public final class H5Group: H5Node {
    init(id: hid_t, filePath: String, name: String) {
        super.init(id: id, filePath: filePath, name: name, closer: H5Gclose)
    }
}
