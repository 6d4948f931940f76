import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// The SSM dynamics (A_log, the Δ projection, S4D's B, Mamba-2's dt_bias) are the `ssm` optimizer group
/// (`train.optimizer.ssm_lr_scale`); every projection stays in the standard group.
final class ParamGroupTests: XCTestCase {
    func testSSMDynamicsAreTheSSMGroup() throws {
        let (mamba, _) = try buildMixer("mamba", [:])
        let groups = Dictionary(uniqueKeysWithValues: mamba.parameters.map { ($0.name, $0.group) })
        for n in ["m.A_log", "m.dt_proj.weight", "m.dt_proj.bias"] { XCTAssertEqual(groups[n], .ssm, n) }
        for n in ["m.in_proj.weight", "m.x_proj.weight", "m.out_proj.weight", "m.conv1d.weight", "m.D"] { XCTAssertEqual(groups[n], .standard, n) }
        let (s4d, _) = try buildMixer("s4d", [:])
        let g2 = Dictionary(uniqueKeysWithValues: s4d.parameters.map { ($0.name, $0.group) })
        XCTAssertEqual(g2["m.B"], .ssm)
        XCTAssertEqual(g2["m.C"], .standard)
        let (mamba2, _) = try buildMixer("mamba2", [:])
        let g3 = Dictionary(uniqueKeysWithValues: mamba2.parameters.map { ($0.name, $0.group) })
        for n in ["m.A_log", "m.dt_bias"] { XCTAssertEqual(g3[n], .ssm, n) }
        for n in ["m.in_proj.weight", "m.conv1d.weight", "m.D", "m.norm.weight", "m.out_proj.weight"] { XCTAssertEqual(g3[n], .standard, n) }
        for e in MixerRegistry.entries where !["mamba", "s4d", "mamba2"].contains(e.name) {
            let (m, _) = try buildMixer(e.name, [:])
            XCTAssertTrue(m.parameters.allSatisfy { $0.group == .standard }, e.name)
        }
    }
}
