; Inno Setup script: a Windows installer for the PyInstaller folder dist\SaliencyViewer.
; Build on Windows:  python installer\build.py --no-archive
;                    iscc /DAppVersion=0.1.0 installer\windows\saliency-viewer.iss
; Output: dist\SaliencyViewer-<version>-setup.exe. Installs per user by default (no admin rights,
; as in most hospital desktops); "Install for all users" in the dialog asks for elevation.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define AppName "Saliency Viewer"
#define AppExe "SaliencyViewer.exe"
#define Root "..\.."

[Setup]
; A fixed AppId keeps upgrades and uninstall pointing at the same installation.
AppId={{4C1E6E0B-7E2A-4B8F-9C55-5A1E2D3F6B71}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Saliency Viewer
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=SaliencyViewer-{#AppVersion}-setup
SetupIconFile={#Root}\build\installer\icons\saliency-viewer.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "dcmassoc"; Description: "Open .dcm files with {#AppName}"; GroupDescription: "File associations:"; Flags: unchecked

[Files]
Source: "{#Root}\dist\SaliencyViewer\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\{#AppName} (demo study)"; Filename: "{app}\{#AppExe}"; Parameters: "--demo"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "SaliencyViewer.dcm"; ValueData: ""; Flags: uninsdeletevalue; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\SaliencyViewer.dcm"; ValueType: string; ValueName: ""; ValueData: "DICOM image"; Flags: uninsdeletekey; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\SaliencyViewer.dcm\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"; Tasks: dcmassoc
Root: HKA; Subkey: "Software\Classes\SaliencyViewer.dcm\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""; Tasks: dcmassoc

[Run]
Filename: "{app}\{#AppExe}"; Parameters: "--demo"; Description: "Open the demo study"; Flags: nowait postinstall skipifsilent
