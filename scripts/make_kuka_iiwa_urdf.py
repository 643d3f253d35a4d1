"""Writes spatialpin_ros/urdf/kuka_iiwa_wsg50.urdf: pybullet_data's KUKA iiwa (kuka_iiwa/model.urdf)
with KUKA's axis speeds and a WSG-50 gripper at its flange, its meshes as package:// URIs.

    scripts/run python scripts/make_kuka_iiwa_urdf.py
"""
import re, pybullet_data, os
src = open(os.path.join(pybullet_data.getDataPath(), "kuka_iiwa/model.urdf")).read()
# iiwa 14 R820 axis speeds (KUKA data sheet, deg/s 85 85 100 75 130 135 135), in rad/s
vel = [1.483, 1.483, 1.745, 1.309, 2.269, 2.356, 2.356]
body = src[src.index('<robot name="lbr_iiwa"'):src.rindex("</robot>")]
body = body.replace('<robot name="lbr_iiwa" xmlns:xacro="http://www.ros.org/wiki/xacro">',
                    '<robot name="kuka_iiwa_wsg50">')
body = re.sub(r'filename="meshes/', 'filename="package://pybullet_data/kuka_iiwa/meshes/', body)
for i, v in enumerate(vel, 1):
    body = re.sub(r'(<joint name="lbr_iiwa_joint_%d".*?velocity=")10(")' % i,
                  lambda m: m.group(1) + str(v) + m.group(2), body, flags=re.S)
# inertia comments of the xacro are long; keep the body as is
head = '''<?xml version="1.0" ?>
<!-- KUKA LBR iiwa 14 R820 with a Schunk WSG-50 parallel gripper at its flange.
     The arm: pybullet_data's kuka_iiwa/model.urdf (BSD licence, Robert Krug & Todor Stoyanov,
     AASS Research Center, Orebro University), with the axis speeds of KUKA's data sheet
     instead of its 10 rad/s. The gripper: the WSG-50 housing mesh of pybullet_data's
     gripper/meshes/WSG50_110.stl (146 x 50 x 72.5 mm, its stroke along x) and two prismatic
     jaws of 0 to 55 mm each (the WSG 50-110's 110 mm stroke, 420 mm/s), fingers as boxes.
     The flange is 44 mm above link 7's frame (as in pybullet_data's kuka_with_gripper2.sdf).
     Mesh files are package:// URIs (package pybullet_data), resolved when the robot loads
     (spatialpin_ros.core.urdf_resources). -->
'''
grip = '''
  <!-- Schunk WSG-50 at the flange -->
  <joint name="wsg50_flange_joint" type="fixed">
    <parent link="lbr_iiwa_link_7"/>
    <child link="wsg50_base_link"/>
    <origin rpy="0 0 0" xyz="0 0 0.044"/>
  </joint>
  <link name="wsg50_base_link">
    <inertial>
      <origin rpy="0 0 0" xyz="0 0 0.036"/>
      <mass value="1.2"/>
      <inertia ixx="0.0008" ixy="0" ixz="0" iyy="0.0026" iyz="0" izz="0.0024"/>
    </inertial>
    <visual>
      <origin rpy="0 0 0" xyz="0 0 0"/>
      <geometry>
        <mesh filename="package://pybullet_data/gripper/meshes/WSG50_110.stl"/>
      </geometry>
      <material name="Grey"/>
    </visual>
    <collision>
      <origin rpy="0 0 0" xyz="0 0 0.03625"/>
      <geometry>
        <box size="0.146 0.05 0.0725"/>
      </geometry>
    </collision>
  </link>
'''
for side, axis, sx in (("left", "-1 0 0", -1), ("right", "1 0 0", 1)):
    grip += f'''  <joint name="wsg50_finger_{side}_joint" type="prismatic">
    <parent link="wsg50_base_link"/>
    <child link="wsg50_finger_{side}"/>
    <origin rpy="0 0 0" xyz="0 0 0.0725"/>
    <axis xyz="{axis}"/>
    <limit effort="80" lower="0.0" upper="0.055" velocity="0.42"/>
    <dynamics damping="0.1"/>
  </joint>
  <link name="wsg50_finger_{side}">
    <inertial>
      <origin rpy="0 0 0" xyz="{sx * 0.008:.3f} 0 0.025"/>
      <mass value="0.1"/>
      <inertia ixx="0.00004" ixy="0" ixz="0" iyy="0.00004" iyz="0" izz="0.00001"/>
    </inertial>
    <visual>
      <origin rpy="0 0 0" xyz="{sx * 0.008:.3f} 0 0.0325"/>
      <geometry>
        <box size="0.016 0.024 0.065"/>
      </geometry>
      <material name="Blue"/>
    </visual>
    <collision>
      <origin rpy="0 0 0" xyz="{sx * 0.008:.3f} 0 0.0325"/>
      <geometry>
        <box size="0.016 0.024 0.065"/>
      </geometry>
    </collision>
  </link>
'''
grip += '''  <!-- Tool centre point: between the jaws, 7 mm above the fingertips -->
  <joint name="wsg50_tcp_joint" type="fixed">
    <parent link="wsg50_base_link"/>
    <child link="wsg50_tcp"/>
    <origin rpy="0 0 0" xyz="0 0 0.1305"/>
  </joint>
  <link name="wsg50_tcp">
    <inertial>
      <origin rpy="0 0 0" xyz="0 0 0"/>
      <mass value="0.001"/>
      <inertia ixx="1e-7" ixy="0" ixz="0" iyy="1e-7" iyz="0" izz="1e-7"/>
    </inertial>
  </link>
</robot>
'''
lic = src[src.index('<!--LICENSE'):src.index('<robot name="lbr_iiwa"')]
out = head + lic + body + grip
dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spatialpin_ros", "urdf",
                    "kuka_iiwa_wsg50.urdf")
open(dest, "w").write(out)
print(f"wrote {dest}")
