import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// The SSM dynamics (A_log, the Δ projection, S4D's B) are the `ssm` optimizer group
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
        for e in MixerRegistry.entries where e.name != "mamba" && e.name != "s4d" {
            let (m, _) = try buildMixer(e.name, [:])
            XCTAssertTrue(m.parameters.allSatisfy { $0.group == .standard }, e.name)
        }
    }
}
